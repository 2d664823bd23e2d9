"""The lab: a twin of the Dapper cluster served on loopback over the real protocols."""
