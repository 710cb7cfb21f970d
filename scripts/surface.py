#!/usr/bin/env python3
"""Figures of the workspace's shape, per crate: files and lines of Rust
(tests included), the largest file, and the public names rustdoc lists
(`cargo doc --workspace --no-deps --all-features` first; its all.html
pages are read). `python3 scripts/surface.py`"""
import os, re

CRATES = [("sturdy-acme", "src", "sturdy_acme"),
          ("sturdy-acme-postgres", "postgres/src", "sturdy_acme_postgres"),
          ("sturdy-acme-testca", "testca/src", "sturdy_acme_testca"),
          ("sturdy-acme-cli", "cli/src", None)]

def rust_files(root):
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".rs"):
                yield os.path.join(d, f)

def public_names(doc_name):
    page = f"target/doc/{doc_name}/all.html"
    if not doc_name or not os.path.exists(page):
        return None, {}
    text = open(page).read()
    kinds = {}
    for kind, items in re.findall(r'<h3 id="(\w+)">.*?</h3><ul class="all-items">(.*?)</ul>', text):
        kinds[kind] = len(re.findall(r"<li>", items))
    return sum(kinds.values()), kinds

print(f"{'crate':24} {'files':>5} {'lines':>7}  {'largest file':44} {'public names':>12}")
for name, root, doc in CRATES:
    sizes = [(sum(1 for _ in open(p)), p) for p in rust_files(root)]
    lines = sum(n for n, _ in sizes)
    big_n, big = max(sizes)
    total, kinds = public_names(doc)
    shown = "-" if total is None else f"{total} ({', '.join(f'{k} {v}' for k, v in kinds.items())})"
    print(f"{name:24} {len(sizes):>5} {lines:>7}  {big + ' ' + str(big_n):44} {shown}")
