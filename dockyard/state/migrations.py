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
    # 2: volumes and the outstanding Mount ids of their drivers
    """
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        created TEXT NOT NULL,           -- RFC 3339
        labels TEXT NOT NULL,            -- JSON object or null; never sent to the driver
        options TEXT NOT NULL            -- JSON object or null: the driver options given
    );
    CREATE TABLE volume_mounts (
        id TEXT PRIMARY KEY,             -- 64-hex id sent to the driver's Mount, then Unmount
        volume TEXT NOT NULL,
        driver TEXT NOT NULL,
        container TEXT NOT NULL          -- the container whose start mounted it
    );
    CREATE INDEX volume_mounts_container ON volume_mounts(container)
    """,
    # 3: managed plugins
    """
    CREATE TABLE plugins (
        id TEXT PRIMARY KEY,             -- 64 hex
        name TEXT NOT NULL UNIQUE,       -- familiar reference with tag: "acme/vol:latest"
        record TEXT NOT NULL             -- JSON: config, settings, enabled, monitor
    )
    """,
    # 4: what registries and archives taught us: repo digests, compressed forms, blob sources
    """
    CREATE TABLE repo_digests (
        ref TEXT PRIMARY KEY,            -- canonical "127.0.0.1:5000/team/app@sha256:<top digest>"
        image_id TEXT NOT NULL REFERENCES images(id),
        added REAL NOT NULL
    );
    CREATE INDEX repo_digests_image ON repo_digests(image_id);
    CREATE TABLE layer_blobs (
        diff_id TEXT NOT NULL,           -- the uncompressed layer
        digest TEXT NOT NULL,            -- a blob in the content store holding it
        media_type TEXT NOT NULL,        -- how it is compressed
        size INTEGER NOT NULL,
        diff_size INTEGER,               -- bytes of the uncompressed tar, when known
        PRIMARY KEY (diff_id, digest)
    );
    CREATE TABLE blob_sources (
        digest TEXT NOT NULL,
        repository TEXT NOT NULL,        -- canonical repository known to hold the blob
        PRIMARY KEY (digest, repository)
    )
    """,
    # 5: networks, their endpoints, and the default IPAM's pools and addresses
    """
    CREATE TABLE networks (
        id TEXT PRIMARY KEY,             -- 64 hex
        name TEXT NOT NULL UNIQUE,
        created REAL NOT NULL,
        record TEXT NOT NULL             -- JSON: driver, options, labels, IPAM config, pools
    );
    CREATE TABLE endpoints (
        id TEXT PRIMARY KEY,             -- 64 hex
        network_id TEXT NOT NULL REFERENCES networks(id),
        container_id TEXT NOT NULL,
        record TEXT NOT NULL,            -- JSON: address, MAC, aliases, interface, ports
        UNIQUE (network_id, container_id)
    );
    CREATE INDEX endpoints_container ON endpoints(container_id);
    CREATE TABLE ipam_pools (
        id TEXT PRIMARY KEY,             -- "<address space>/<pool>[/<sub pool>]"
        address_space TEXT NOT NULL,
        pool TEXT NOT NULL,              -- CIDR
        sub_pool TEXT NOT NULL,          -- CIDR or ''
        next INTEGER NOT NULL            -- where the next free-address search starts
    );
    CREATE TABLE ipam_addresses (
        pool_id TEXT NOT NULL REFERENCES ipam_pools(id),
        address TEXT NOT NULL,           -- plain IP
        PRIMARY KEY (pool_id, address)
    )
    """,
    # 6: the build cache, the containers builds run their steps in, bootstrapped bases
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
    # 7: an image's parent: the image a committed container was made from (Docker's rule:
    # a parent with children cannot be deleted; deleting a child prunes untagged parents)
    """
    CREATE TABLE image_parents (
        image_id TEXT PRIMARY KEY,       -- the child
        parent TEXT NOT NULL             -- the image it was made from
    );
    CREATE INDEX image_parents_parent ON image_parents(parent)
    """,
    # 8: the intent journal of container operations (containers/journal.py)
    """
    CREATE TABLE container_intents (
        id TEXT PRIMARY KEY,             -- random; one row per operation in flight
        container_id TEXT NOT NULL,      -- may name a container not recorded yet (create)
        action TEXT NOT NULL,            -- create, start, stop, kill, restart, remove, ...
        detail TEXT NOT NULL,            -- JSON: what a restore needs to finish or undo it
        started REAL NOT NULL            -- unix seconds
    );
    CREATE INDEX container_intents_container ON container_intents(container_id)
    """,
]
