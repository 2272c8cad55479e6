"""The expand/contract rule of releases, enforced: which contract migrations a deploy or
a rollback crosses.

A migration that is not backward compatible says so (``contract = True`` in its file);
``scripts/build-release`` records each release's revision graph and its contract
revisions in the release manifest (``migrations``: ``{revision: {"down": [...],
"contract": bool}}``, ``contract_revisions``). ``playbooks/app.yml`` reads the manifests
of the release to deploy and of the releases the app hosts run (``current``,
``previous``), and the database's revision (``/readyz``), and refuses, before the deploy
lock, a run that crosses a contract migration unless ``-e app_release_contract=true``
(``fab deploy --contract``, ``fab rollback --contract``), which turns the maintenance
page on around the migration and the switch.

Crossing, both ways (the database's revisions R(db) and the release's R(release), each
a revision and all its ancestors):

- applied: R(release) - R(db), the migrations this release brings (a deploy): a contract
  one breaks the release the hosts still run until they are switched;
- undone: R(db) - R(release), the migrations the database has that the release does not
  know (a rollback, or a deploy of an older release): the release predates them, so a
  contract one removed something its code still uses. A rollback does not downgrade the
  schema (docs/runbooks/release.md says how to, when the old code needs it).

Nothing is crossed when no app host runs a release yet (first install: no old code to
break). When the database's revision, or the release's head, is in no manifest read
(a release built before manifests had the graph, or a database changed by hand), the
crossing cannot be decided: ``unknown`` says why and the run is refused as for a
contract migration.

Jinja filter (``ansible.cfg``: ``filter_plugins = plugins/filter``):
``target | ssai_release_contract(manifests, db_heads, running)``; the plain function
``release_contract`` is importable without Ansible (the tests import this file by path).
"""
from __future__ import annotations


def merged_graph(manifests) -> dict[str, dict]:
    """The revision graphs of several manifests as one (a revision is the same everywhere)."""
    graph: dict[str, dict] = {}
    for manifest in manifests:
        for revision, info in ((manifest or {}).get("migrations") or {}).items():
            known = graph.setdefault(str(revision), {"down": [], "contract": False})
            known["down"] = sorted(set(known["down"]) | {str(d) for d in info.get("down") or []})
            known["contract"] = known["contract"] or bool(info.get("contract"))
    return graph


def lineage(graph: dict[str, dict], heads) -> set[str]:
    """The revisions `heads` and all their ancestors in `graph`."""
    seen: set[str] = set()
    todo = [str(h) for h in heads]
    while todo:
        revision = todo.pop()
        if revision in seen:
            continue
        seen.add(revision)
        todo.extend((graph.get(revision) or {}).get("down", []))
    return seen


def in_order(graph: dict[str, dict], revisions: set[str]) -> list[str]:
    """`revisions` oldest first (a parent before its children; ties by name)."""
    depth: dict[str, int] = {}

    def level(revision: str, path: frozenset = frozenset()) -> int:
        if revision not in depth:
            downs = [d for d in (graph.get(revision) or {}).get("down", []) if d not in path]
            depth[revision] = 1 + max((level(d, path | {revision}) for d in downs), default=-1)
        return depth[revision]

    return sorted(revisions, key=lambda r: (level(r), r))


def release_contract(target: dict, manifests=(), db_heads=None, running: bool = True) -> dict:
    """What deploying the release of manifest `target` crosses, given the other manifests
    read (the releases the app hosts run), the database's heads (``None``: not known, no
    app host answered; ``[]``: an empty database) and whether any app host runs a release.

    Returns ``{"head", "database", "applied", "undone", "contract", "unknown"}``: the
    release's head, the database's heads, the revisions applied and undone (oldest first),
    the contract revisions among them, and why the crossing could not be decided ("" when
    it could)."""
    target = target or {}
    head = str(target.get("alembic_head") or "")
    result = {"head": head, "database": None if db_heads is None else sorted(str(h) for h in db_heads),
              "applied": [], "undone": [], "contract": [], "unknown": ""}
    if not running:
        return result  # first install: no release runs that a migration could break
    if not head:
        result["unknown"] = "the release's manifest names no alembic_head"
        return result
    if db_heads is None:
        result["unknown"] = ("no app host answered /readyz with the database's revision, so the migrations "
                             "between it and the release cannot be found")
        return result
    graph = merged_graph([target, *manifests])
    missing = [r for r in [head, *result["database"]] if r not in graph]
    if missing:
        result["unknown"] = (f"{', '.join(missing)} is in none of the release manifests read (the release's and "
                             "those of the releases the app hosts run), so the migrations between the database "
                             "and the release cannot be found")
        return result
    release_side = lineage(graph, [head])
    database_side = lineage(graph, result["database"])
    result["applied"] = in_order(graph, release_side - database_side)
    result["undone"] = in_order(graph, database_side - release_side)
    result["contract"] = [r for r in result["applied"] + result["undone"] if graph[r]["contract"]]
    return result


def describe(result: dict) -> str:
    """One sentence for the refusal: the contract revisions crossed and how."""
    parts = []
    applied = [r for r in result["contract"] if r in result["applied"]]
    undone = [r for r in result["contract"] if r in result["undone"]]
    if applied:
        parts.append(f"it applies the contract migration(s) {', '.join(applied)}, which the release the app hosts "
                     "run may not work with")
    if undone:
        parts.append(f"the database has the contract migration(s) {', '.join(undone)}, which the release "
                     f"({result['head']}) predates: its code may need what they removed")
    if result["unknown"]:
        parts.append(f"the crossing cannot be decided: {result['unknown']}")
    return "; ".join(parts)


def _filter_error(func):
    def wrapper(*args, **kwargs):
        from ansible.errors import AnsibleFilterError

        try:
            return func(*args, **kwargs)
        except (ValueError, TypeError, AttributeError) as e:
            raise AnsibleFilterError(f"{func.__name__}: {e}") from e

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


@_filter_error
def ssai_release_contract(target, manifests=(), db_heads=None, running=True):
    """`target | ssai_release_contract(manifests, db_heads, running)`, with `describe` as "message"."""
    result = release_contract(target, list(manifests or []), None if db_heads is None else list(db_heads),
                              bool(running))
    result["message"] = describe(result)
    return result


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"ssai_release_contract": ssai_release_contract}
