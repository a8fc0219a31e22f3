"""Docker's mount grammar: -v, --mount, --tmpfs, --volumes-from, and mount(8) options."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard import mount
from dockyard.cli.mountflags import MountFlagError, mount_flag, volume_flags
from dockyard.containers import schema
from dockyard.containers.schema import Mount
from dockyard.errors import InvalidArgument
from dockyard.volumes import mounts


def test_bind_with_mode_and_propagation() -> None:
    point = mounts.parse_bind("/srv/site/:/www:ro,rslave,z")
    assert (point.type, point.source, point.destination) == ("bind", "/srv/site", "/www")
    assert (point.rw, point.propagation, point.mode) == (False, "rslave", "ro,rslave,z")
    assert point.create_source


def test_named_and_anonymous_volumes() -> None:
    named = mounts.parse_bind("data:/var/lib/app:nocopy", "local")
    assert (named.type, named.name, named.driver, named.copy_data) == (
        "volume",
        "data",
        "local",
        False,
    )
    anonymous = mounts.parse_bind("/cache")
    assert (anonymous.type, anonymous.anonymous, anonymous.copy_data) == ("volume", True, True)
    assert mounts.parse_bind("/host:/ctr").propagation == "rprivate"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
        (":/x", "invalid volume specification: ':/x'"),
        ("/x:rw", "invalid volume specification: '/x:rw'"),
        ("/host:/ctr:bogus", "invalid mode: bogus"),
        ("/host:/ctr:ro,rw", "invalid mode: ro,rw"),
        (
            "/host:relative",
            "invalid volume specification: '/host:relative': invalid mount config for type "
            "\"bind\": invalid mount path: 'relative' mount path must be absolute",
        ),
        (
            "data:/",
            "invalid volume specification: 'data:/': invalid mount config for type \"volume\": "
            "invalid specification: destination can't be '/'",
        ),
    ],
)
def test_bad_binds_get_dockers_messages(raw: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as failure:
        mounts.parse_bind(raw)
    assert failure.value.message == message


def parse(spec: dict[str, Any]) -> mounts.MountPoint:
    return mounts.parse_mount(schema.decode(Mount, spec))


def test_mount_entries() -> None:
    bind = parse(
        {"Type": "bind", "Source": "/", "Target": "/h", "BindOptions": {"Propagation": "rshared"}}
    )
    assert (bind.source, bind.propagation, bind.rw) == ("/", "rshared", True)
    volume = parse(
        {
            "Type": "volume",
            "Source": "v",
            "Target": "/d",
            "ReadOnly": True,
            "VolumeOptions": {"NoCopy": True, "DriverConfig": {"Options": {"type": "tmpfs"}}},
        }
    )
    assert (volume.name, volume.rw, volume.copy_data) == ("v", False, False)
    assert volume.volume_options == {"type": "tmpfs"}
    tmpfs = parse(
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1777}}
    )
    assert tmpfs.tmpfs_options == "mode=1777,size=1m"
    subpath = parse(
        {"Type": "volume", "Source": "v", "Target": "/d", "VolumeOptions": {"Subpath": "a/./b"}}
    )
    assert (subpath.subpath, subpath.copy_data) == ("a/b", False)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"Type": "bind", "Source": "/no/such/path", "Target": "/x"},
            'invalid mount config for type "bind": bind source path does not exist: /no/such/path',
        ),
        (
            {"Type": "floppy", "Target": "/x"},
            'invalid mount config for type "floppy": mount type unknown',
        ),
        (
            {"Type": "volume", "Target": "/x", "ReadOnly": True},
            'invalid mount config for type "volume": must not set ReadOnly mode when using '
            "anonymous volumes",
        ),
        (
            {"Type": "tmpfs", "Source": "x", "Target": "/x"},
            'invalid mount config for type "tmpfs": field Source must not be specified',
        ),
        (
            {"Type": "bind", "Source": "/", "Target": "/x", "BindOptions": {"Propagation": "up"}},
            'invalid mount config for type "bind": invalid propagation mode: up',
        ),
        (
            {"Type": "volume", "Source": "v", "Target": "x"},
            "invalid mount config for type \"volume\": invalid mount path: 'x' mount path must "
            "be absolute",
        ),
        (
            {
                "Type": "volume",
                "Source": "v",
                "Target": "/x",
                "VolumeOptions": {"Subpath": "../up"},
            },
            'invalid mount config for type "volume": subpath must not escape the volume: ../up',
        ),
        (
            {"Type": "volume", "Source": "v", "Target": "/x", "VolumeOptions": {"Subpath": "/abs"}},
            'invalid mount config for type "volume": subpath must be a relative path within the '
            "volume: /abs",
        ),
    ],
)
def test_bad_mounts_get_dockers_messages(spec: dict, message: str) -> None:
    with pytest.raises(InvalidArgument) as failure:
        parse(spec)
    assert failure.value.message == message


def test_tmpfs_options_merge_with_the_last_word_winning() -> None:
    assert mounts.parse_tmpfs("/scratch", "size=16m,mode=1777,exec") == [
        "nosuid",
        "nodev",
        "rprivate",
        "size=16m",
        "mode=1777",
        "exec",
    ]
    with pytest.raises(InvalidArgument, match=r'invalid tmpfs option \["bogus"\]'):
        mounts.parse_tmpfs("/scratch", "bogus")
    with pytest.raises(InvalidArgument, match="mount path must be absolute"):
        mounts.parse_tmpfs("scratch", "")


def test_volumes_from_modes() -> None:
    assert mounts.parse_volumes_from("data") == ("data", "rw")
    assert mounts.parse_volumes_from("data:ro") == ("data", "ro")
    for bad in ("data:rslave", "data:nocopy", "data:bogus"):
        with pytest.raises(InvalidArgument, match="invalid mode"):
            mounts.parse_volumes_from(bad)


def test_mount8_options_split_into_flags_and_data() -> None:
    flags, data = mount.parse_options("ro,nosuid,size=8m,bind,uid=1000")
    assert flags == mount.MS_RDONLY | mount.MS_NOSUID | mount.MS_BIND
    assert data == "size=8m,uid=1000"
    assert mount.parse_options("rw,exec")[0] == 0


def test_parents_sort_before_children() -> None:
    order = mounts.sort_for_mounting(["/a/b/c", "/a", "/z", "/a/b"], lambda p: p)
    assert order == ["/a", "/z", "/a/b", "/a/b/c"]


def test_cli_flags() -> None:
    volumes, binds = volume_flags(("/anon", "data:/d:ro", "/h:/c"))
    assert volumes == {"/anon": {}} and binds == ["data:/d:ro", "/h:/c"]
    assert mount_flag("type=bind,src=/h,dst=/c,readonly,bind-propagation=rslave") == {
        "Type": "bind",
        "Source": "/h",
        "Target": "/c",
        "ReadOnly": True,
        "BindOptions": {"Propagation": "rslave"},
    }
    assert mount_flag("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1777")["TmpfsOptions"] == {
        "SizeBytes": 1 << 20,
        "Mode": 0o1777,
    }
    assert mount_flag("src=v,dst=/d,volume-opt=type=tmpfs,volume-nocopy")["VolumeOptions"] == {
        "DriverConfig": {"Options": {"type": "tmpfs"}},
        "NoCopy": True,
    }
    with pytest.raises(MountFlagError, match="target is required"):
        mount_flag("type=volume,src=v")
    with pytest.raises(MountFlagError, match="unexpected key 'colour'"):
        mount_flag("dst=/d,colour=blue")
