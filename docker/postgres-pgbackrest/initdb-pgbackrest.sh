#!/usr/bin/env bash
# Runs once, when the volume is new (the image's init scripts run as postgres against a
# temporary server started with the service's flags, archiving on): the repository for this
# server, a check that WAL reaches it, and the first full backup.
set -euo pipefail
pgbackrest --stanza=atrium stanza-create
pgbackrest --stanza=atrium check
pgbackrest --stanza=atrium --type=full backup
