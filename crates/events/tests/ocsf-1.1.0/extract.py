#!/usr/bin/env python3
"""Cuts the OCSF 1.1.0 schema export down to what validating File System Activity needs.

Usage: python3 extract.py EXPORT.json > file_activity.json

EXPORT.json is the OCSF server's export of schema 1.1.0 (the shape of
https://schema.ocsf.io/export/schema?version=1.1.0: version, types, objects, classes, ...). The
output keeps, unchanged, the version, every data type, the file_activity class and every object
reachable from it through attributes that belong to no profile (a record that declares no
profile in metadata.profiles may use no other). Keys are sorted so that a re-run diffs cleanly.
"""
import json
import sys

export = json.load(open(sys.argv[1], encoding="utf-8"))
if export.get("version") != "1.1.0":
    sys.exit(f"expected the 1.1.0 export, got {export.get('version')!r}")
cls = export["classes"]["file_activity"]

def objects_of(attributes):
    return [a["object_type"] for a in attributes.values()
            if a.get("type") == "object_t" and not a.get("profile")]

seen, todo = set(), objects_of(cls["attributes"])
while todo:
    name = todo.pop()
    if name not in seen:
        seen.add(name)
        todo.extend(objects_of(export["objects"][name]["attributes"]))

subset = {
    "version": export["version"],
    "types": export["types"],
    "classes": {"file_activity": cls},
    "objects": {name: export["objects"][name] for name in sorted(seen)},
}
json.dump(subset, sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
sys.stdout.write("\n")
