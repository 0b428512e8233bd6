"""VMware desktop networking: the networking answer file, vmnet dhcpd.conf files, DHCP
leases and .vmx files.  Every parser keeps the text it read, so writing back an unchanged
model gives identical bytes, and edits touch only the lines they mean to."""
