#!/bin/sh
# What the official redis image's entrypoint does: protected mode off (the
# container's network is the protection; other containers connect without a
# password), and redis-server runs as the redis user, owning /data.
set -e
if [ "$1" = redis-server ]; then
	shift
	set -- redis-server --protected-mode no "$@"
	if [ "$(id -u)" = 0 ]; then
		chown -R redis:redis /data
		exec setpriv --reuid=redis --regid=redis --init-groups "$@"
	fi
fi
exec "$@"
