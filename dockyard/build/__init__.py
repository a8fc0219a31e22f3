"""Building images from Dockerfiles, and base images from distribution archives."""
