"""Image references: parsing, normalisation and display forms.

Clients name images in shorthand (`busybox`, `team/app:1`) or fully qualified
(`docker.io/library/busybox:latest`) interchangeably, and they compare what the
engine echoes back against what they sent. So every reference is stored in one
canonical form and shown in Docker's "familiar" form, and both must come out
exactly as Docker's distribution/reference produces them (`ParseNormalizedNamed`
plus `FamiliarString`), error messages included, since clients print those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from dockyard.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"

# Docker Hub's name from the v1 era; still typed by users and some tools.
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
# Docker limits only the path: distribution/reference v0.6 stopped counting the
# domain, so a registry with a long host name does not eat into it.
_MAX_PATH_LENGTH = 255

# The grammar from distribution/reference. Character classes are spelled out
# because Python's \w is Unicode-aware while Go's is ASCII-only.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
# Deliberately looser than a real digest (any algorithm, either case, 32+ hex):
# Docker matches this first and reports stricter problems with their own messages.
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_DOMAIN_RE = re.compile(_DOMAIN)
_PATH_RE = re.compile(_PATH)
_SUFFIX_RE = re.compile(rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_TAG_RE = re.compile(_TAG)
_DIGEST_RE = re.compile(_DIGEST)
# go-digest's general digest grammar, used only to choose between its two errors.
_OCI_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_LOWER_HEX_RE = re.compile(r"[0-9a-f]+")
_IMAGE_ID_RE = re.compile(r"(?:sha256:)?[0-9a-f]{64}")
_BARE_ID_RE = re.compile(r"[0-9a-f]{64}")

# The algorithms Docker's digest package can verify, with their hex lengths.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised image reference.

    `domain` is empty only for the rare names Docker accepts without a usable
    registry host (`foo_bar.com/app`: the first component looks like a domain
    but is not a valid host name, so Docker reads the whole thing as a path).
    """

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """Canonical name without tag or digest: `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_repository(self) -> str:
        """The name as Docker displays it: `busybox`, `team/app`, `localhost:5000/app`."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        official = self.path.removeprefix(_OFFICIAL_PREFIX)
        # `library/` only hides a single-component name; a nested one keeps it.
        if official != self.path and "/" not in official:
            return official
        return self.path

    def familiar(self) -> str:
        """Display form, as used in `RepoTags` and events: `busybox:latest`."""
        return self._with_suffix(self.familiar_repository)

    def __str__(self) -> str:
        return self._with_suffix(self.repository)

    def with_tag(self, tag: str) -> Reference:
        """The same repository with `tag`; a digest, if any, is kept."""
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument("invalid tag format")
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        """The same repository with `digest`; a tag, if any, is kept."""
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidArgument("invalid digest format")
        _check_digest(digest)
        return replace(self, digest=digest)

    def _with_suffix(self, name: str) -> str:
        if self.tag is not None:
            name = f"{name}:{self.tag}"
        if self.digest is not None:
            name = f"{name}@{self.digest}"
        return name


def parse(text: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse and normalise `text` the way Docker's `ParseNormalizedNamed` does.

    When `text` has neither tag nor digest, the tag is `default_tag` (None
    leaves it absent). A reference with both keeps both; pulling by digest and
    ignoring the tag is the caller's decision, as in Docker.

    Raises InvalidArgument with Docker's message when `text` is not a reference.
    """
    if _BARE_ID_RE.fullmatch(text):
        # Otherwise it would parse as an image named after the hex string,
        # silently shadowing the image ID the user almost certainly meant.
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_domain(text)
    # Docker checks case before the grammar so that `Busybox` gets a helpful
    # message instead of "invalid reference format". Cutting at the first ":"
    # is rough (a digest leaves "@sha256" behind), but the message quotes
    # exactly this cut in Docker too.
    repository = remainder.partition(":")[0]
    if repository.lower() != repository:
        raise InvalidArgument(
            f"invalid reference format: repository name ({repository}) must be lowercase"
        )
    return _parse_canonical(f"{domain}/{remainder}", default_tag)


def is_full_image_id(text: str) -> bool:
    """Whether `text` is a complete image ID: 64 lowercase hex, optionally `sha256:`-prefixed."""
    return _IMAGE_ID_RE.fullmatch(text) is not None


def split_repo_tag(repo: str, tag: str | None) -> tuple[str, str | None]:
    """Separate a tag written into `repo` (`repo=foo:1`) from the repository.

    API endpoints such as tag, commit and import take `repo` and `tag` as two
    parameters, but clients also put the tag into `repo`. An explicit, non-empty
    `tag` wins, as in Docker. Only splits: the result still has to be parsed,
    and anything that would not parse is left in place so that parsing fails.
    """
    if "@" in repo:
        # A digest is never a tag to move; Docker rejects these by parsing.
        return repo, tag or None
    name, colon, embedded = repo.rpartition(":")
    # A ":" followed by "/" belongs to a registry port (`localhost:5000/foo`);
    # an empty tag (`foo:`) is invalid, and splitting would hide that.
    if not colon or not embedded or "/" in embedded:
        return repo, tag or None
    return name, tag or embedded


def _split_domain(name: str) -> tuple[str, str]:
    """Split off the registry domain, defaulting to Docker Hub.

    A first component counts as a domain only if it could not be a Hub
    namespace: `localhost`, anything with `.` or `:` (host names, IPs, ports),
    or anything with uppercase letters, which Hub namespaces never have.
    """
    first, slash, rest = name.partition("/")
    if not slash:
        # Even `localhost` or `example.com` alone is an image on Docker Hub.
        return DEFAULT_DOMAIN, _OFFICIAL_PREFIX + name
    if first == _LEGACY_DOMAIN:
        domain, path = DEFAULT_DOMAIN, rest
    elif first == "localhost" or "." in first or ":" in first or first.lower() != first:
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    return domain, path


def _parse_canonical(text: str, default_tag: str | None) -> Reference:
    """Parse a reference whose domain has already been made explicit."""
    parts = _match_reference(text)
    if parts is None:
        lowered = text.lower()
        if lowered != text and _match_reference(lowered) is not None:
            raise InvalidArgument("repository name must be lowercase")
        raise InvalidArgument("invalid reference format")
    domain, path, tag, digest = parts
    if len(path) > _MAX_PATH_LENGTH:
        raise InvalidArgument(
            f"repository name must not be more than {_MAX_PATH_LENGTH} characters"
        )
    if digest is not None:
        _check_digest(digest)
    if tag is None and digest is None:
        tag = default_tag
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _match_reference(text: str) -> tuple[str, str, str | None, str | None] | None:
    """Match `[domain "/"] path [":" tag] ["@" digest]`, or None.

    Matched piecewise rather than with one regular expression: a domain cannot
    contain "/", so it can only be the whole first component, and committing to
    that keeps matching linear on hostile input.
    """
    name_end = len(text)
    for separator in ("@", ":"):
        # The tag and digest alphabets exclude "/", so they start after the last one.
        found = text.find(separator, text.rfind("/") + 1, name_end)
        if found != -1:
            name_end = found
    suffix = _SUFFIX_RE.fullmatch(text, name_end)
    if suffix is None:
        return None
    name = text[:name_end]
    first, slash, rest = name.partition("/")
    if slash and _DOMAIN_RE.fullmatch(first) and _PATH_RE.fullmatch(rest):
        domain, path = first, rest
    elif _PATH_RE.fullmatch(name):
        domain, path = "", name
    else:
        return None
    return domain, path, suffix["tag"], suffix["digest"]


def _check_digest(digest: str) -> None:
    """Apply the checks Docker's digest package makes beyond the reference grammar."""
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        if _OCI_DIGEST_RE.fullmatch(digest):
            raise InvalidArgument("unsupported digest algorithm")
        raise InvalidArgument("invalid checksum digest format")
    if len(encoded) != length:
        raise InvalidArgument("invalid checksum digest length")
    if not _LOWER_HEX_RE.fullmatch(encoded):
        raise InvalidArgument("invalid checksum digest format")
