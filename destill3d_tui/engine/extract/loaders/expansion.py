"""Count what a scene graph expands to before a library expands it (issue 14.5).

3MF build items and components, glTF nodes, COLLADA ``instance_node`` and BREP location
chains all place geometry by reference, so a few KB can describe 2^40 instances, and the
libraries expand every one (trimesh flattens each instance, OpenCASCADE composes each
location). Here each graph is walked once, memoised per node, in Python integers (no
overflow), and the totals are compared with the caps: over a cap is ``too_large`` with the
count in the message, decided in milliseconds.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

from ...errors import FormatError

MAX_INSTANCES = 50_000  # placed meshes / primitives: CPU per 10K, glTF ~2 s, COLLADA ~7 s (the timeout is 120 s)
MAX_3MF_INSTANCES = 2_000  # trimesh's 3MF loader is quadratic in instances: 2,000 ~11 s, 10,000 ~135 s
MAX_TRIANGLES = 20_000_000  # triangles after expansion (spec 13.2 MAX_FACES)
MAX_LOCATION_ITEMS = 100_000  # elementary transforms in all BREP location chains together
SATURATE = 10**30  # counts stop growing here: enough to refuse, cheap to add


def _fail(name: str, message: str, reason: str = "too_large") -> FormatError:
    return FormatError(f"{name}: {message}", reason=reason)


def expanded(
    children: Mapping[Hashable, Sequence[tuple[Hashable, int]]],
    own: Mapping[Hashable, tuple[int, int]],
    roots: Iterable[tuple[Hashable, int]],
    name: str,
) -> tuple[int, int]:
    """(instances, triangles) reached from ``roots`` through ``children``.

    ``own[node]`` is what a node places itself (meshes, triangles); ``children[node]`` lists
    (child, multiplicity). Unknown references count nothing (the library reports them); a
    cycle is a ``parse_error``. Iterative post-order, so a 100K-deep chain cannot overflow.
    """
    roots = list(roots)
    done: dict[Hashable, tuple[int, int]] = {}
    for root, _ in roots:
        _visit(root, children, own, done, name)
    total_instances = total_triangles = 0
    for root, times in roots:
        instances, triangles = done.get(root, (0, 0))
        total_instances = min(total_instances + times * instances, SATURATE)
        total_triangles = min(total_triangles + times * triangles, SATURATE)
    return total_instances, total_triangles


def _visit(root, children, own, done: dict, name: str) -> None:
    if root in done or root not in own:
        return
    on_stack = {root}
    stack = [(root, iter(children.get(root, ())))]
    while stack:
        node, pending = stack[-1]
        step = next(pending, None)
        if step is None:
            stack.pop()
            on_stack.discard(node)
            instances, triangles = own[node]
            for child, times in children.get(node, ()):
                ci, ct = done.get(child, (0, 0))
                instances, triangles = min(instances + times * ci, SATURATE), min(triangles + times * ct, SATURATE)
            done[node] = (instances, triangles)
            continue
        child = step[0]
        if child in on_stack:
            raise _fail(name, f"the instance graph has a cycle through {_label(child)}", "parse_error")
        if child not in done and child in own:
            on_stack.add(child)
            stack.append((child, iter(children.get(child, ()))))


def _label(node: Hashable) -> str:
    """An XML element by its id (COLLADA nodes are keyed by element), anything else as written."""
    get = getattr(node, "get", None)
    return f"node {get('id')!r}" if callable(get) and get("id") else repr(node)


def check_totals(name: str, what: str, instances: int, triangles: int, max_instances: int = MAX_INSTANCES) -> None:
    """Refuse a file whose expansion is over the caps, naming the counts."""
    if instances > max_instances:
        raise _fail(name, f"{what} expand to {_count(instances)} placed meshes (cap {max_instances})")
    if triangles > MAX_TRIANGLES:
        raise _fail(name, f"{what} expand to {_count(triangles)} triangles (cap {MAX_TRIANGLES})")


def _count(value: int) -> str:
    return f"more than {SATURATE:.0e}" if value >= SATURATE else f"{value:,}"


# ---------------------------------------------------------------- 3MF


def check_3mf_model(tree, name: str) -> None:
    """Build items x component instances x triangles of one 3MF model part (an lxml tree)."""
    own: dict[str, tuple[int, int]] = {}
    children: dict[str, list[tuple[str, int]]] = {}
    for obj in tree.iter("{*}object"):  # tag filters run in C: 100K build items cost ~0.1 s
        oid = obj.get("id", "")
        triangles = int(obj.xpath("count(.//*[local-name()='triangle'])"))
        own[oid] = (int(obj.find("{*}mesh") is not None), triangles)
        children[oid] = [(c.get("objectid", ""), 1) for c in obj.iter("{*}component")]
    roots = [(item.get("objectid", ""), 1) for item in tree.iter("{*}item")]
    check_totals(name, "3MF build items and components", *expanded(children, own, roots, name), MAX_3MF_INSTANCES)


def _is(el, tag: str) -> bool:
    return isinstance(el.tag, str) and el.tag.rsplit("}", 1)[-1] == tag


# ---------------------------------------------------------------- glTF


def check_gltf_scene(doc: dict, name: str) -> None:
    """Nodes x mesh primitives x triangles over every scene (nodes may be shared, so counted per path)."""
    accessors = doc.get("accessors") or []
    meshes = doc.get("meshes") or []
    nodes = doc.get("nodes") or []
    mesh_cost = [_gltf_mesh(m, accessors) for m in meshes]
    own, children = {}, {}
    for i, node in enumerate(nodes):
        mesh = node.get("mesh")
        own[i] = mesh_cost[mesh] if isinstance(mesh, int) and 0 <= mesh < len(mesh_cost) else (0, 0)
        children[i] = [(int(c), 1) for c in node.get("children") or []]
    scenes = doc.get("scenes") or []
    if scenes:
        roots = [(int(n), 1) for scene in scenes for n in scene.get("nodes") or []]
    else:
        has_parent = {c for kids in children.values() for c, _ in kids}
        roots = [(i, 1) for i in range(len(nodes)) if i not in has_parent]
    check_totals(name, "glTF nodes and mesh primitives", *expanded(children, own, roots, name))


def _gltf_mesh(mesh: dict, accessors: list) -> tuple[int, int]:
    """(primitives, triangles) of one glTF mesh; a primitive's triangles from its index or position count."""
    primitives = mesh.get("primitives") or []
    triangles = 0
    for prim in primitives:
        ref = prim.get("indices", (prim.get("attributes") or {}).get("POSITION"))
        if isinstance(ref, int) and 0 <= ref < len(accessors):
            triangles += int(accessors[ref].get("count", 0)) // 3
    return len(primitives), triangles


# ---------------------------------------------------------------- COLLADA


def check_dae_scene(tree, name: str) -> None:
    """instance_node / instance_geometry graph of a COLLADA document (an lxml tree)."""
    geometry_triangles: dict[str, int] = {}
    for geom in tree.iter():
        if _is(geom, "geometry"):
            geometry_triangles[geom.get("id", "")] = sum(
                int(p.get("count", "0")) for p in geom.iter()
                if _is(p, "triangles") or _is(p, "polylist") or _is(p, "polygons") or _is(p, "trifans")
                or _is(p, "tristrips")
            )  # fmt: skip
    elements = [n for n in tree.iter() if _is(n, "node") or _is(n, "visual_scene")]
    ids: dict[str, object] = {}
    for el in elements:
        ids.setdefault(el.get("id", ""), el)
    own: dict[object, tuple[int, int]] = {}
    children: dict[object, list[tuple[object, int]]] = {}
    for el in elements:  # keyed by the element itself: nested nodes need no id
        instances = triangles = 0
        kids: list[tuple[object, int]] = []
        for child in el:
            if _is(child, "instance_geometry"):
                instances += 1
                triangles += geometry_triangles.get(child.get("url", "").lstrip("#"), 0)
            elif _is(child, "instance_node") and child.get("url", "").lstrip("#") in ids:
                kids.append((ids[child.get("url", "").lstrip("#")], 1))
            elif _is(child, "node"):
                kids.append((child, 1))
        own[el], children[el] = (instances, triangles), kids
    scenes = [el for el in elements if _is(el, "visual_scene")]
    check_totals(name, "COLLADA node instances", *expanded(children, own, [(s, 1) for s in scenes], name))


# ---------------------------------------------------------------- BREP


def check_brep_locations(lines: Iterable[bytes], name: str) -> None:
    """Elementary transforms the ``Locations`` section of a BREP composes.

    A location is ``1`` + a 3x4 matrix (one item) or ``2`` + ``id power`` pairs ending in
    ``0``: OpenCASCADE multiplies out ``location(id) ** power`` item by item (``Powered``
    recurses ``power`` times), so the cost is items(id) x |power| per pair.
    """
    tokens = _location_tokens(lines)
    if tokens is None:
        return
    count, stream = tokens
    items: list[int] = [0]
    total = 0
    for _ in range(count):
        kind = next(stream, None)
        if kind == 1:
            for _ in range(12):
                next(stream, None)
            items.append(1)
        elif kind == 2:
            size = 0
            ref = next(stream, 0)
            while ref not in (0, None):
                power = abs(next(stream, 1) or 0)
                base = items[ref] if 0 < ref < len(items) else 1
                size = min(size + (base * power if base > 1 else min(power, 1)), SATURATE)
                ref = next(stream, 0)
            items.append(size)
        else:
            return  # malformed: OpenCASCADE reports it
        total = min(total + items[-1], SATURATE)
        if total > MAX_LOCATION_ITEMS:
            raise _fail(name, f"BREP location chains compose at least {_count(total)} transforms "
                        f"(cap {MAX_LOCATION_ITEMS})")  # fmt: skip


def _location_tokens(lines: Iterable[bytes]):
    """(location count, iterator of numbers after it), or None when the file has no Locations section."""
    it = iter(lines)
    for line in it:
        if line.startswith(b"Locations"):
            parts = line.split()
            if len(parts) < 2 or not parts[1].isdigit():
                return None
            return int(parts[1]), _numbers(it)
    return None


def _numbers(lines):
    """The numbers of the Locations section; a token that is no number ends it (OpenCASCADE judges the rest)."""
    for line in lines:
        if line[:1].isalpha():
            return  # the next section (Curve2ds, Curves, ...)
        for token in line.split():
            try:
                yield int(token)
            except ValueError:
                try:
                    yield float(token)
                except ValueError:
                    return
