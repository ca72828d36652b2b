"""Split interests.json once into interests_dev.json (~60 %) and interests_heldout.json (~40 %).

Stratified by `kind`; interests sharing a `group` (spelling/typo variants with near-identical labels) move together so
that no label set leaks from dev into held-out. Run from this folder: python3 split.py
"""

import json
import random
from collections import defaultdict

SEED = 20251203
DEV_SHARE = 0.6


def main():
    with open("interests.json") as f:
        interests = json.load(f)
    groups = defaultdict(list)  # group key -> members, in file order
    for item in interests:
        groups[item.get("group", item["interest"])].append(item)
    by_kind = defaultdict(list)  # kind of a group's first member -> group keys
    for key, members in groups.items():
        by_kind[members[0]["kind"]].append(key)
    rng = random.Random(SEED)
    dev, heldout = [], []
    for kind in sorted(by_kind):
        keys = sorted(by_kind[kind])
        rng.shuffle(keys)
        target = round(DEV_SHARE * sum(len(groups[k]) for k in keys))
        taken = 0
        for key in keys:
            members = groups[key]
            if taken < target:
                dev.extend(members)
                taken += len(members)
            else:
                heldout.extend(members)
    for name, items in (("interests_dev.json", dev), ("interests_heldout.json", heldout)):
        with open(name, "w") as f:
            json.dump(items, f, indent=2, ensure_ascii=False)
            f.write("\n")
    print(f"dev {len(dev)}, held-out {len(heldout)}")


if __name__ == "__main__":
    main()
