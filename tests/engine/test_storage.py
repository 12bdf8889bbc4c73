"""The on-disk inspector agrees with `docker inspect` for images and containers we create."""

from __future__ import annotations

import pytest

from edgefleet.engine.storage import DataRoot, StorageError, chain_ids, volume_usage
from tests.support import images

pytestmark = pytest.mark.engine


def test_chain_ids_follow_the_oci_rule() -> None:
    import hashlib

    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert chain_ids([a]) == [a]
    assert chain_ids([a, b])[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()


def test_image_and_container_agree_with_docker_inspect(registry: str, unique: str) -> None:
    ref = f"{registry}/storage-{unique}:v1"
    images.build(ref, dockerfile=images.busybox_dockerfile(extra="RUN echo x > /x"))
    with images.engine_client() as c:
        info = c.get(f"/images/{ref}/json").json()
        docker_root = c.get("/info").json()["DockerRootDir"]
        vol = c.post("/volumes/create", json={"Name": f"st-{unique}"}).json()["Name"]
        ctr = c.post("/containers/create", params={"name": f"st-{unique}"}, json={
            "Image": ref, "Labels": {"io.balena.app-id": "9", "io.balena.service-name": "svc"},
            "HostConfig": {"Mounts": [{"Type": "volume", "Source": vol, "Target": "/v"}]}}
        ).json()["Id"]
        cinfo = c.get(f"/containers/{ctr}/json").json()
    try:
        root = DataRoot(docker_root)
        for name in (ref, info["Id"], info["Id"].removeprefix("sha256:")[:12]):
            img = root.image(name)
            assert img.id == info["Id"]
        assert [x.diff_id for x in img.layers] == info["RootFS"]["Layers"]
        data = info["GraphDriver"]["Data"]
        assert str(img.layers[-1].diff_dir) == data["UpperDir"]
        lower = [str(x.diff_dir) for x in reversed(img.layers[:-1])]
        assert data.get("LowerDir", "").split(":") == lower or not lower
        assert ref in img.tags
        on_disk = root.container(ctr[:12])
        assert str(on_disk.writable_dir) == cinfo["GraphDriver"]["Data"]["UpperDir"]
        assert on_disk.volumes == (vol,)
        usage = volume_usage(root)
        mine = next(v for v in usage["volumes"] if v["volume"] == vol)
        assert mine["used_by"] == [{"app": "9", "service": "svc"}]
        with pytest.raises(StorageError, match="no image"):
            root.image(f"{registry}/nope-{unique}:v1")
    finally:
        with images.engine_client() as c:
            c.delete(f"/containers/{ctr}", params={"force": "1"})
            c.delete(f"/volumes/{vol}")
            c.delete(f"/images/{ref}", params={"force": "1"})


def test_not_a_data_root_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(StorageError, match="not an overlay2 engine data root"):
        DataRoot(str(tmp_path))
