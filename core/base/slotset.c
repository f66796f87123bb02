/* slotset — see slotset.h. */
#include "slotset.h"

#include <stdlib.h>
#include <string.h>

bool sb_slot_set_has(const sb_slot_set *set, size_t slot)
{
    if (slot < 64)
        return (set->low >> slot) & 1u;
    size_t word = slot / 64 - 1;
    return word < set->nhigh && ((set->high[word] >> (slot % 64)) & 1u);
}

int sb_slot_set_put(sb_slot_set *set, size_t slot, bool on)
{
    uint64_t bit = UINT64_C(1) << (slot % 64);
    uint64_t *word = &set->low;
    if (slot >= 64) {
        size_t w = slot / 64 - 1;
        if (w >= set->nhigh) {
            if (!on)
                return 0;
            uint64_t *grown = realloc(set->high, (w + 1) * sizeof(*grown));
            if (!grown)
                return -1;
            memset(grown + set->nhigh, 0,
                   (w + 1 - set->nhigh) * sizeof(*grown));
            set->high = grown;
            set->nhigh = w + 1;
        }
        word = &set->high[w];
    }
    *word = on ? *word | bit : *word & ~bit;
    return 0;
}

void sb_slot_set_free(sb_slot_set *set)
{
    free(set->high);
    memset(set, 0, sizeof(*set));
}
