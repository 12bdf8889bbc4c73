"""Image deltas on the fleet server (issue 19): `GET /api/v3/delta?src=&dest=`."""
