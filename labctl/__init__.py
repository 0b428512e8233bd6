"""labctl: a Docker host VM on your desktop hypervisor whose containers you reach by IP."""

__version__ = "0.1.0"
