"""Lab in a box: network namespaces, real dhcpd/dhclient, VMware tool stand-ins (see netns.py)."""
