"""EngineState.image_for: every way a service names its image, through the snapshot's index."""

from __future__ import annotations

from edgefleet.model.engine_state import EngineState, ImageState

DIGEST = "sha256:" + "d" * 64
A = ImageState(id="sha256:" + "a" * 64, repo_tags=("reg:5000/app:v1", "busybox:latest"),
               repo_digests=(f"reg:5000/app@{DIGEST}",))
B = ImageState(id="sha256:" + "b" * 64, repo_tags=("reg:5000/app:v2",))


def snapshot() -> EngineState:
    return EngineState(images=(A, B))


def test_ids_tags_and_digests_resolve() -> None:
    state = snapshot()
    assert state.image_for(A.id) is A
    assert state.image_for("b" * 64) is B
    assert state.image_for("reg:5000/app:v2") is B
    assert state.image_for("busybox") is A  # a bare name means :latest
    assert state.image_for(f"reg:5000/app@{DIGEST}") is A
    assert state.image_for(f"reg:5000/app:v9@{DIGEST}") is A  # the digest decides, not v9


def test_unknown_refs_resolve_to_nothing() -> None:
    state = snapshot()
    assert state.image_for("reg:5000/app:v3") is None
    assert state.image_for(f"other/app@{DIGEST}") is None
    assert state.image_for("busybox:1.36") is None
    assert EngineState().image_for("busybox") is None


def test_the_index_changes_neither_equality_nor_the_dump() -> None:
    used, fresh = snapshot(), snapshot()
    assert used.image_for("busybox") is A
    assert used == fresh
    assert used.model_dump() == fresh.model_dump()


def test_a_snapshot_with_other_images_never_sees_the_last_index() -> None:
    assert snapshot().image_for("busybox") is A
    fewer = EngineState(images=(B,))
    assert fewer.image_for("busybox") is None
    assert fewer.image_for("reg:5000/app:v2") is B
    same_objects = EngineState(images=(A, B))
    assert same_objects.image_for("busybox") is A
