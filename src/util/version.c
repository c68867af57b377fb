/*
 * version — see version.h. The Makefile defines CHATD_VERSION for this
 * file alone (and rebuilds it when VERSION changes).
 */
#include "util/version.h"

#ifndef CHATD_VERSION
#error "CHATD_VERSION is not defined: build with make (it reads the VERSION file)"
#endif

const char chatd_version[] = CHATD_VERSION;
