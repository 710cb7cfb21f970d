#!/usr/bin/env python3
"""Lists each top-level module's dependencies on the others (crate:: paths
outside comments) and any cycles: `python3 scripts/module-cycles.py src`.
The modules are found in src/, not listed by hand."""
import re,os,sys,itertools
root=sys.argv[1]
# Every top-level module: a directory or a .rs file of src/ (lib.rs aside),
# so a module added later is checked without a line here.
mods=sorted({f[:-3] if f.endswith('.rs') else f for f in os.listdir(root)
             if (f.endswith('.rs') and f!='lib.rs') or os.path.isdir(os.path.join(root,f))})
deps={m:set() for m in mods}
for m in mods:
    paths=[]
    if os.path.isdir(f'{root}/{m}'):
        for d,_,fs in os.walk(f'{root}/{m}'):
            paths+= [os.path.join(d,f) for f in fs if f.endswith('.rs')]
    if os.path.exists(f'{root}/{m}.rs'): paths.append(f'{root}/{m}.rs')
    for p in paths:
        for line in open(p):
            code=line.split('//')[0]
            for t in re.findall(r'crate::(\w+)',code):
                if t in mods and t!=m: deps[m].add(t)
# find cycles (SCCs of size>1) and mutual pairs
pairs=[(a,b) for a,b in itertools.combinations(mods,2) if b in deps[a] and a in deps[b]]
print("mutual pairs:",pairs)
# SCC via simple reachability
def reach(a):
    seen=set();st=[a]
    while st:
        x=st.pop()
        for y in deps[x]:
            if y not in seen: seen.add(y);st.append(y)
    return seen
sccs=set()
for a in mods:
    r=reach(a)
    comp=frozenset([a]+[b for b in r if a in reach(b)])
    if len(comp)>1: sccs.add(comp)
print("cycles (SCCs):",[sorted(c) for c in sccs])
for m in mods: print(m,'->',sorted(deps[m]))
sys.exit(1 if pairs or sccs else 0)
