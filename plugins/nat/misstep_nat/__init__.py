"""misstep-nat: NAT (negative-aware training), NUT and Vanilla reformatters for misstep."""
