"""The test support itself: a busybox image builds, pushes and pulls back from the registry."""

from __future__ import annotations

from tests.support import images


def test_busybox_image_round_trips_through_registry(registry: str, unique: str) -> None:
    built = images.build_and_push(f"smoke-{unique}", "v1")
    with images.engine_client() as c:
        assert c.get(f"/images/{built.ref}/json").status_code == 404
        r = c.post("/images/create", params={"fromImage": built.ref.rsplit(":", 1)[0],
                                              "tag": "v1"})
        r.raise_for_status()
        assert c.get(f"/images/{built.ref}/json").json()["Id"] == built.id
        c.delete(f"/images/{built.ref}")
