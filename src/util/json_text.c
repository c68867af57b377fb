#include "util/json_text.h"

#include "util/mem.h"

char *json_text_compact(const json_t *json)
{
    size_t size = json_dumpb(json, NULL, 0, JSON_COMPACT);
    if (size == 0)
        return NULL;
    char *text = mem_alloc(size + 1);
    if (text == NULL)
        return NULL;
    if (json_dumpb(json, text, size, JSON_COMPACT) != size) {
        mem_free(text);
        return NULL;
    }
    text[size] = '\0';
    return text;
}
