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
    # 2: networks, their endpoints, and the default IPAM's pools and addresses
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
]
