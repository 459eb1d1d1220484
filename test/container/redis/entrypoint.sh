#!/bin/sh
# Runs the container's command; a redis-server gets protected mode off, as in the official image.
set -e
if [ "$1" = redis-server ]; then
  set -- "$@" --protected-mode no
fi
exec "$@"
