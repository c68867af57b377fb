#include "rtc/ice.h"
const rtc_ice_ops rtc_ice_mux_ops;
