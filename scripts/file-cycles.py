#!/usr/bin/env python3
"""Import circles between the files of a crate: `python3 scripts/file-cycles.py
src [testca/src ...]`. A file imports another when it takes a name the other
defines: through `use` (groups, globs and re-exports followed) or an inline
`crate::`/`super::`/`self::` path (a `pub use` re-export is the module's
facade, followed to the file that defines the name, never an edge itself).
Names are resolved as rustc would for
this code's style (items at the start of a line); an import of a module
itself counts as an edge to the module's file. Circles listed in
scripts/known-circles.txt (one circle a line: its files, space-separated)
are reported but pass; any other circle fails. Exits 1 on a new circle."""
import os, re, sys

ITEM = re.compile(r'^(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:unsafe\s+)?(?:const\s+fn|fn|struct|enum|trait|type|const|static|union)\s+([A-Za-z_]\w*)')
MACRO = re.compile(r'^macro_rules!\s+([A-Za-z_]\w*)')
MOD = re.compile(r'^(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_]\w*)\s*;')
USE = re.compile(r'^\s*(pub(?:\([^)]*\))?\s+)?use\s+([^;]*);', re.M | re.S)
INLINE = re.compile(r'\b((?:crate|super|self)(?:::[A-Za-z_]\w*)+)')


def strip(text):
    """Code without comments, string literals (roughly), `pub(in path)`
    visibilities and inline test modules (`#[cfg(test)] mod x { ... }`,
    by this code's convention at the end of a file: not part of what the
    file imports)."""
    m = re.search(r'^\s*#\[cfg\(test\)\]\s*\n\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{', text, re.M)
    if m:
        text = text[:m.start()]
    text = re.sub(r'pub\(in\s+[^)]*\)', 'pub', text)
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return '\n'.join(l.split('//')[0] for l in text.split('\n'))


def expand(tree):
    """`a::{b, c::{d, e as f}, *}` -> [['a','b'], ['a','c','d'], ['a','c','e'], ['a','*']]."""
    tree = re.sub(r'\s+', '', tree)
    out = []

    def walk(prefix, t):
        depth, start, parts = 0, 0, []
        if '{' not in t:
            name = t.split(' as ')[0]
            segs = [s for s in name.split('::') if s]
            out.append(prefix + segs)
            return
        i = t.index('{')
        head = [s for s in t[:i].split('::') if s]
        body = t[i + 1:t.rindex('}')]
        for j, ch in enumerate(body):
            if ch == '{':
                depth += 1
            elif ch == '}':
                depth -= 1
            elif ch == ',' and depth == 0:
                parts.append(body[start:j])
                start = j + 1
        parts.append(body[start:])
        for p in parts:
            if p:
                walk(prefix + head, p)

    walk([], tree)
    return out


class Crate:
    def __init__(self, root):
        self.root = root
        self.files = {}     # module path (tuple) -> file
        self.modpath = {}   # file -> module path
        for d, _, fs in os.walk(root):
            for f in fs:
                if not f.endswith('.rs'):
                    continue
                path = os.path.join(d, f)
                rel = os.path.relpath(path, root)[:-3].split(os.sep)
                if rel[-1] in ('mod', 'lib', 'main'):
                    rel = rel[:-1]
                if rel and rel[0] == 'bin':
                    continue
                self.files[tuple(rel)] = path
                self.modpath[path] = tuple(rel)
        self.text = {p: strip(open(p).read()) for p in self.modpath}
        self.defined = {p: set() for p in self.modpath}
        self.reexports = {p: {} for p in self.modpath}   # name -> absolute path
        self.globs = {p: [] for p in self.modpath}       # pub use x::*
        for p, text in self.text.items():
            for line in text.split('\n'):
                m = ITEM.match(line) or MACRO.match(line)
                if m:
                    self.defined[p].add(m.group(1))
            for vis, tree in USE.findall(text):
                if not vis:
                    continue
                for segs, alias in self.expand_aliased(tree):
                    absolute = self.absolute(p, segs)
                    if absolute is None:
                        continue
                    if segs[-1] == '*':
                        self.globs[p].append(absolute[:-1])
                    else:
                        self.reexports[p][alias or absolute[-1]] = absolute

    def expand_aliased(self, tree):
        """[(segments, alias or None)] of a use tree."""
        tree = ' '.join(tree.split())
        marked = re.sub(r'(\w+)\s+as\s+(\w+)', r'\1@\2', tree)
        out = []
        for segs in expand(marked):
            last = segs[-1] if segs else ''
            if '@' in last:
                name, alias = last.split('@')
                out.append((segs[:-1] + [name], alias))
            else:
                out.append((segs, None))
        return out

    def expand_use(self, tree):
        tree = ' '.join(tree.split())
        # drop aliases: `a as b` -> `a`
        tree = re.sub(r'\s+as\s+\w+', '', tree)
        return expand(tree)

    def absolute(self, path, segs):
        """A use path as absolute module segments, or None outside the crate."""
        here = list(self.modpath[path])
        if not segs:
            return None
        if segs[0] == 'crate':
            return segs[1:]
        if segs[0] in ('super', 'self'):
            cur = here[:]
            i = 0
            while i < len(segs) and segs[i] in ('super', 'self'):
                if segs[i] == 'super':
                    if not cur:
                        return None
                    cur = cur[:-1]
                i += 1
            return cur + segs[i:]
        if tuple(here + [segs[0]]) in self.files:   # a child module by name
            return here + segs
        return None

    def resolve(self, segs, seen=0):
        """The file that defines what an absolute path names (or None)."""
        if seen > 8:
            return None
        segs = [s for s in segs if s != 'self'] or segs
        # the longest prefix that is a module file
        for k in range(len(segs), -1, -1):
            if tuple(segs[:k]) in self.files:
                f = self.files[tuple(segs[:k])]
                rest = segs[k:]
                if not rest or rest == ['*']:
                    return f
                name = rest[0]
                if name in self.defined[f]:
                    return f
                if name in self.reexports[f]:
                    return self.resolve(self.reexports[f][name], seen + 1)
                for g in self.globs[f]:
                    target = self.resolve(g + [name], seen + 1)
                    if target:
                        return target
                return None
        return None

    def edges(self):
        out = {p: {} for p in self.modpath}
        for p, text in self.text.items():
            targets = []
            for vis, tree in USE.findall(text):
                if vis:
                    # A re-export is the module's facade, not a name its
                    # code takes: followed when resolving, never an edge.
                    continue
                for segs in self.expand_use(tree):
                    absolute = self.absolute(p, segs)
                    if absolute is None:
                        continue
                    if absolute and absolute[-1] == '*':
                        module = tuple(absolute[:-1])
                        f = self.files.get(module)
                        if not f:
                            continue
                        words = set(re.findall(r'(?<![.\w])([A-Z]\w*)\b', text))
                        words |= set(re.findall(r'(?<![.\w])([a-z_]\w*)\s*(?:\(|::|!)', text))
                        names = (self.defined[f] | set(self.reexports[f])) & words
                        for n in names:
                            targets.append((self.resolve(list(module) + [n]), n))
                    else:
                        targets.append((self.resolve(absolute), absolute[-1]))
            for m in INLINE.findall(text):
                segs = m.split('::')
                absolute = self.absolute(p, segs)
                if absolute:
                    targets.append((self.resolve(absolute), absolute[-1]))
            for f, name in targets:
                if f and f != p:
                    out[p].setdefault(f, set()).add(name)
        return out


def circles(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


known_file = os.path.join(os.path.dirname(__file__), 'known-circles.txt')
known = []
if os.path.exists(known_file):
    for line in open(known_file):
        line = line.split('#')[0].strip()
        if line:
            known.append(sorted(line.split()))
new = 0
for root in sys.argv[1:]:
    crate = Crate(root)
    edges = crate.edges()
    found = circles(edges)
    print(f"{root}: {len(crate.files)} files, {sum(len(v) for v in edges.values())} file imports, {len(found)} circles")
    for comp in found:
        status = 'known (scripts/known-circles.txt)' if comp in known else 'NEW'
        if comp not in known:
            new += 1
        print(f"  circle ({status}): {' '.join(comp)}")
        for a in comp:
            for b, names in sorted(edges[a].items()):
                if b in comp:
                    print(f"    {a} -> {b}: {', '.join(sorted(names))}")
sys.exit(1 if new else 0)
