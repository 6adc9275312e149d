from pixfind.indexer.plan import make_plan, under_roots
from pixfind.search.types import FileStat


def test_plan_splits_new_changed_unchanged_removed():
    known = {
        "/p/a.jpg": (1.0, 10),
        "/p/b.jpg": (1.0, 10),
        "/p/gone.jpg": (1.0, 5),
        "/q/x.jpg": (1.0, 1),
    }
    found = [
        FileStat("/p/a.jpg", 1.0, 10),  # unchanged
        FileStat("/p/b.jpg", 2.0, 10),  # mtime changed
        FileStat("/p/c.jpg", 1.0, 3),  # new
    ]
    plan = make_plan(found, known, ["/p"])
    assert [s.path for s in plan.new] == ["/p/c.jpg"]
    assert [s.path for s in plan.changed] == ["/p/b.jpg"]
    assert plan.unchanged == 1
    # /q is another root: its files stay when only /p is indexed again
    assert plan.removed == ["/p/gone.jpg"]


def test_size_change_alone_means_changed():
    plan = make_plan([FileStat("/p/a.jpg", 1.0, 11)], {"/p/a.jpg": (1.0, 10)}, ["/p"])
    assert len(plan.changed) == 1 and not plan.new


def test_under_roots_respects_path_boundaries():
    assert under_roots("/photos/a.jpg", ["/photos"])
    assert not under_roots("/photos2/a.jpg", ["/photos"])
    assert under_roots("/photos/a.jpg", ["/photos/a.jpg"])


def test_files_not_seen_under_an_unreadable_folder_are_kept_unless_pruning():
    known = {"/p/a.jpg": (1.0, 1), "/p/locked/b.jpg": (1.0, 1), "/p/locked2/c.jpg": (1.0, 1)}
    unseen = ["/p/locked"]
    plan = make_plan([], known, ["/p"], unseen)
    assert plan.removed == ["/p/a.jpg", "/p/locked2/c.jpg"] and plan.kept == ["/p/locked/b.jpg"]
    pruned = make_plan([], known, ["/p"], unseen, prune=True)
    assert pruned.removed == sorted(known) and pruned.kept == []
