"""Image reference parsing must match Docker's distribution/reference exactly."""

import pytest

from dockyard.errors import InvalidArgument
from dockyard.images.reference import (
    Reference,
    is_full_image_id,
    parse,
    split_repo_tag,
)

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"


@pytest.mark.parametrize(
    ("text", "canonical", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("team/app:1.2", "docker.io/team/app:1.2", "team/app:1.2"),
        ("localhost/foo", "localhost/foo:latest", "localhost/foo:latest"),
        ("localhost:5000/foo:1", "localhost:5000/foo:1", "localhost:5000/foo:1"),
        (
            "127.0.0.1:5443/team/app:1.2",
            "127.0.0.1:5443/team/app:1.2",
            "127.0.0.1:5443/team/app:1.2",
        ),
        ("[::1]:5000/foo", "[::1]:5000/foo:latest", "[::1]:5000/foo:latest"),
        ("[::1]/foo", "[::1]/foo:latest", "[::1]/foo:latest"),
        ("example.com/a/b/c:tag", "example.com/a/b/c:tag", "example.com/a/b/c:tag"),
        ("ghcr.io/o/r:v1", "ghcr.io/o/r:v1", "ghcr.io/o/r:v1"),
        # A registry's own "library" namespace is not Docker Hub's.
        (
            "example.com/library/foo",
            "example.com/library/foo:latest",
            "example.com/library/foo:latest",
        ),
        # `library/` is only hidden for a single nested name.
        ("library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
        # Tags may use uppercase; only the repository must be lowercase.
        ("busybox:V1.0_rc-2", "docker.io/library/busybox:V1.0_rc-2", "busybox:V1.0_rc-2"),
        ("a__b---c/d.e_f", "docker.io/a__b---c/d.e_f:latest", "a__b---c/d.e_f:latest"),
    ],
)
def test_normalises_like_docker(text: str, canonical: str, familiar: str) -> None:
    ref = parse(text)
    assert str(ref) == canonical
    assert ref.familiar() == familiar


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag"),
    [
        ("busybox", "docker.io", "library/busybox", "latest"),
        ("localhost/foo", "localhost", "foo", "latest"),
        ("localhost:5000/foo:1", "localhost:5000", "foo", "1"),
        ("127.0.0.1:5443/team/app:1.2", "127.0.0.1:5443", "team/app", "1.2"),
        ("[::1]:5000/foo", "[::1]:5000", "foo", "latest"),
        ("example.com/a/b/c:tag", "example.com", "a/b/c", "tag"),
        ("myregistry:5000/foo", "myregistry:5000", "foo", "latest"),
        # An uppercase first component cannot be a Hub namespace, so it is a host.
        ("MyRegistry/foo", "MyRegistry", "foo", "latest"),
    ],
)
def test_splits_domain_and_path(text: str, domain: str, path: str, tag: str) -> None:
    assert parse(text) == Reference(domain=domain, path=path, tag=tag, digest=None)


@pytest.mark.parametrize(
    ("text", "path", "tag"),
    [
        # Without a "/", nothing is a domain: these are Hub images.
        ("localhost", "library/localhost", "latest"),
        ("example.com", "library/example.com", "latest"),
        ("localhost:5000", "library/localhost", "5000"),
        # A first component without ".", ":" or uppercase is a Hub namespace.
        ("registry/foo", "registry/foo", "latest"),
    ],
)
def test_first_component_is_domain_only_when_it_looks_like_one(
    text: str, path: str, tag: str
) -> None:
    ref = parse(text)
    assert (ref.domain, ref.path, ref.tag) == ("docker.io", path, tag)


def test_invalid_host_falls_back_to_a_domainless_path() -> None:
    # Docker takes "foo_bar.com" for a domain (it has a "."), the host grammar
    # refuses the "_", and the whole name is then read as a bare path.
    ref = parse("foo_bar.com/x")
    assert (ref.domain, ref.path) == ("", "foo_bar.com/x")
    assert ref.repository == "foo_bar.com/x"
    assert ref.familiar() == "foo_bar.com/x:latest"


def test_digest_reference_gets_no_default_tag() -> None:
    ref = parse(f"busybox@{DIGEST}")
    assert ref == Reference("docker.io", "library/busybox", None, DIGEST)
    assert str(ref) == f"docker.io/library/busybox@{DIGEST}"
    assert ref.familiar() == f"busybox@{DIGEST}"


def test_tag_and_digest_are_both_kept() -> None:
    ref = parse(f"busybox:1@{DIGEST}")
    assert (ref.tag, ref.digest) == ("1", DIGEST)
    assert str(ref) == f"docker.io/library/busybox:1@{DIGEST}"
    assert ref.familiar() == f"busybox:1@{DIGEST}"


@pytest.mark.parametrize(
    "digest",
    [f"sha384:{HEX}{HEX[:32]}", f"sha512:{HEX}{HEX}"],
)
def test_accepts_the_other_algorithms_docker_can_verify(digest: str) -> None:
    assert parse(f"localhost:5000/foo@{digest}").digest == digest


def test_default_tag_can_be_overridden_or_left_absent() -> None:
    assert parse("busybox", default_tag=None).tag is None
    assert parse("busybox", default_tag="stable").tag == "stable"
    # An explicit tag is never replaced by the default.
    assert parse("busybox:1", default_tag=None).tag == "1"


def test_repository_forms() -> None:
    hub = parse("busybox:1")
    assert hub.repository == "docker.io/library/busybox"
    assert hub.familiar_repository == "busybox"
    team = parse("team/app")
    assert team.repository == "docker.io/team/app"
    assert team.familiar_repository == "team/app"
    private = parse("127.0.0.1:5000/team/app:2")
    assert private.repository == "127.0.0.1:5000/team/app"
    assert private.familiar_repository == "127.0.0.1:5000/team/app"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "foo:",
        ":tag",
        "@" + DIGEST,
        "foo@sha256:short",
        "foo@sha256:" + "g" * 64,
        "a//b",
        "a/",
        "/a",
        "a:b:c",
        "foo:-tag",
        "foo:.tag",
        "foo:ta/g",
        "foo:tä",
        "foo:" + "t" * 129,
        "foo bar",
        "busybox\n",
        "a.-b",
        "a..b",
        "-a.com/x",
        "a.com:/x",
        "a.com:x/y",
        "::1/foo",
        "[fe80::1%eth0]/x",
        "büsybox",
    ],
)
def test_rejects_malformed_references(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse(text)
    assert caught.value.message == "invalid reference format"


def test_longest_tag_is_accepted() -> None:
    assert parse("foo:" + "t" * 128).tag == "t" * 128


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Foo", "library/Foo"),
        ("busyBox:1", "library/busyBox"),
        ("team/App", "team/App"),
        ("localhost:5000/Foo:1", "Foo"),
        ("docker.io/Foo", "library/Foo"),
    ],
)
def test_uppercase_repository_names_get_dockers_message(text: str, shown: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse(text)
    assert caught.value.message == (
        f"invalid reference format: repository name ({shown}) must be lowercase"
    )


def test_uppercase_host_that_is_not_a_host_is_a_lowercase_error() -> None:
    # Taken as a domain for its uppercase, then refused by the host grammar.
    with pytest.raises(InvalidArgument, match=r"^repository name must be lowercase$"):
        parse("Foo_bar/x")


def test_rejects_a_bare_image_id() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse(HEX)
    assert caught.value.message == (
        f"invalid repository name ({HEX}), cannot specify 64-byte hexadecimal strings"
    )


def test_prefixed_image_id_parses_as_a_tagged_name() -> None:
    # Docker too: "sha256" is a valid name and the hex a valid tag. Callers
    # must try image IDs (is_full_image_id) before parsing a reference.
    assert str(parse(DIGEST)) == f"docker.io/library/sha256:{HEX}"


def test_path_length_limit_excludes_the_domain() -> None:
    # docker.io/library/ + 247 = 265 characters, but the path is exactly 255.
    assert parse("a" * 247).path == "library/" + "a" * 247
    assert parse("example.com/" + "a" * 255).path == "a" * 255
    for text in ("a" * 248, "example.com/" + "a" * 256):
        with pytest.raises(InvalidArgument) as caught:
            parse(text)
        assert caught.value.message == "repository name must not be more than 255 characters"


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        (f"sha256:{HEX[:32]}", "invalid checksum digest length"),
        (f"sha256:{HEX.upper()}", "invalid checksum digest format"),
        (f"md5:{HEX[:32]}", "unsupported digest algorithm"),
        (f"sha256+b64:{HEX}", "unsupported digest algorithm"),
        (f"Sha256:{HEX}", "invalid checksum digest format"),
    ],
)
def test_digest_errors_follow_docker(digest: str, message: str) -> None:
    # The tag keeps the digest out of the case check on the repository name.
    with pytest.raises(InvalidArgument) as caught:
        parse(f"localhost/foo:1@{digest}")
    assert caught.value.message == message


def test_with_tag_replaces_the_tag_and_keeps_the_digest() -> None:
    ref = parse(f"busybox:1@{DIGEST}").with_tag("2")
    assert (ref.tag, ref.digest) == ("2", DIGEST)
    assert parse("busybox", default_tag=None).with_tag("x").familiar() == "busybox:x"


def test_with_digest_keeps_the_tag() -> None:
    ref = parse("busybox:1").with_digest(DIGEST)
    assert str(ref) == f"docker.io/library/busybox:1@{DIGEST}"


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a/b", "a:b", "t" * 129])
def test_with_tag_validates(tag: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid tag format$"):
        parse("busybox").with_tag(tag)


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        ("sha256:short", "invalid digest format"),
        (HEX, "invalid digest format"),
        (f"sha256:{HEX[:40]}", "invalid checksum digest length"),
    ],
)
def test_with_digest_validates(digest: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse("busybox").with_digest(digest)
    assert caught.value.message == message


def test_reference_is_immutable_and_hashable() -> None:
    ref = parse("busybox")
    with pytest.raises(AttributeError):
        ref.tag = "other"  # type: ignore[misc]
    assert {ref, parse("docker.io/library/busybox:latest")} == {ref}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEX, True),
        (DIGEST, True),
        (HEX.upper(), False),
        (HEX[:12], False),
        (HEX + "0", False),
        (f"sha512:{HEX}", False),
        ("busybox", False),
        (HEX + "\n", False),
    ],
)
def test_is_full_image_id(text: str, expected: bool) -> None:
    assert is_full_image_id(text) is expected


@pytest.mark.parametrize(
    ("repo", "tag", "expected"),
    [
        ("foo", None, ("foo", None)),
        ("foo", "", ("foo", None)),
        ("foo", "1", ("foo", "1")),
        ("foo:1", None, ("foo", "1")),
        ("foo:1", "", ("foo", "1")),
        # An explicit tag parameter wins over one written into repo.
        ("foo:1", "2", ("foo", "2")),
        ("docker.io/library/foo:1", None, ("docker.io/library/foo", "1")),
        # A registry port is not a tag.
        ("localhost:5000/foo", None, ("localhost:5000/foo", None)),
        ("localhost:5000/foo:1", None, ("localhost:5000/foo", "1")),
        ("[::1]:5000/foo", None, ("[::1]:5000/foo", None)),
        ("[::1]:5000/foo:1", "", ("[::1]:5000/foo", "1")),
        # Left in place so that parsing still rejects them.
        ("foo:", None, ("foo:", None)),
        (f"foo@{DIGEST}", None, (f"foo@{DIGEST}", None)),
        (f"foo:1@{DIGEST}", "", (f"foo:1@{DIGEST}", None)),
    ],
)
def test_split_repo_tag(repo: str, tag: str | None, expected: tuple[str, str | None]) -> None:
    assert split_repo_tag(repo, tag) == expected
