"""Volumes: data that outlives containers, over the VolumeDriver interface.

`driver` declares the interface (shaped after Docker's VolumeDriver plugin
protocol), `local` is the built-in driver, `mounts` turns Binds/Mounts/Tmpfs/
VolumesFrom into a container's mount points, and `service` is the manager
that keeps the records, the references and the Mount/Unmount pairing.
"""
