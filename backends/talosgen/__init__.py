"""Talos machine configs from the tree, as `talhelper genconfig` makes them.

`talconfig` reads talconfig.yaml and talenv.yaml, `secrets` decrypts the talhelper secret
bundle in memory, `machineconfig` builds the v1alpha1 document Talos v1.11's generator
would, `talosmerge` applies config patches with Talos's own merge rules, `clientconfig`
issues the admin client certificate, and `generate` puts them together and writes the
files (0600). `dapper-tui talos genconfig` and the node-replace runbook use `generate`.
"""
