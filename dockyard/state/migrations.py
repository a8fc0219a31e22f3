"""Schema migrations, oldest first. Never edit a released entry: append a new one."""

MIGRATIONS: list[str] = [
    # 1: images, tags, unpacked layers, containers
    """
    CREATE TABLE images (
        id TEXT PRIMARY KEY,             -- sha256:<config digest>
        manifest_digest TEXT NOT NULL,   -- the manifest we keep in the content store
        created TEXT NOT NULL,           -- RFC 3339 from the image config ('' if unknown)
        size INTEGER NOT NULL,           -- sum of unpacked layer sizes
        added REAL NOT NULL              -- when this engine got the image (unix seconds)
    );
    CREATE TABLE tags (
        ref TEXT PRIMARY KEY,            -- canonical "docker.io/library/busybox:latest"
        image_id TEXT NOT NULL REFERENCES images(id),
        tagged REAL NOT NULL
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE layers (
        chain_id TEXT PRIMARY KEY,       -- sha256:<hex>; names the unpacked filesystem
        diff_id TEXT NOT NULL,
        parent TEXT,                     -- chain id of the layer below, NULL for a base layer
        link TEXT NOT NULL UNIQUE,       -- short name under <root>/layers/l/ for overlay options
        size INTEGER NOT NULL
    );
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,       -- without the leading slash
        image_id TEXT NOT NULL,
        created REAL NOT NULL,
        record TEXT NOT NULL             -- JSON: config, host config, state
    );
    CREATE INDEX containers_image ON containers(image_id)
    """,
    # 2: the build cache, the containers builds run their steps in, bootstrapped bases
    """
    CREATE TABLE build_cache (
        key TEXT PRIMARY KEY,            -- sha256 of parent state, instruction and its inputs
        state_id TEXT NOT NULL,          -- sha256 of the resulting image config
        config TEXT NOT NULL,            -- the resulting image config (its exact bytes)
        layers TEXT NOT NULL,            -- JSON: manifest descriptors of all its layers
        size INTEGER NOT NULL,           -- bytes of the layer this step added (0 if none)
        created REAL NOT NULL,
        last_used REAL NOT NULL
    );
    CREATE TABLE build_containers (
        id TEXT PRIMARY KEY,             -- a container running a RUN step; removed with the build
        created REAL NOT NULL
    );
    CREATE TABLE bootstraps (
        key TEXT PRIMARY KEY,            -- sha256 of distribution, suite, mirror, variant, packages
        image_id TEXT NOT NULL,
        created REAL NOT NULL
    )
    """,
]
