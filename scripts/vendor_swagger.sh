#!/usr/bin/env bash
# Refresh the Swagger UI files that `/docs` serves offline (movie_genie/static/swagger/) from the npm package
# swagger-ui-dist. Needs npm and the npm registry; run from the project root, then commit the changed files.
set -euo pipefail
version="${1:-5}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
mkdir -p movie_genie/static/swagger
for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE; do cp "$tmp/package/$f" movie_genie/static/swagger/; done
echo "swagger-ui-dist $(node -p "require('$tmp/package/package.json').version") -> movie_genie/static/swagger/"
