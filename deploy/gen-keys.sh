#!/bin/sh
# gen-keys.sh makes the Ed25519 key pair that signs models, and the files
# deploy/compose.yaml mounts as secrets:
#
#   secrets/signing.pem      PKCS #8 private key: `metaids train --publish` and the adapter sign with it
#   secrets/signing.pub.pem  its public key: scorers accept only updates it verifies
#   secrets/adapter.yaml     -adapter.signing-key, as a config file the adapter reads
#   secrets/scorer.yaml      -scorer.model.keys, as a config file the scorer reads
#
# It never overwrites a key. For Kubernetes, load the same files into the
# metaids-keys Secret (deploy/README.md).
set -eu
cd "$(dirname "$0")/secrets"
if [ -e signing.pem ]; then
	echo "deploy/secrets/signing.pem exists; remove it first to make a new key" >&2
	exit 1
fi
umask 077
openssl genpkey -algorithm ed25519 -out signing.pem
openssl pkey -in signing.pem -pubout -out signing.pub.pem
indent() { sed 's/^/    /' "$1"; }
{
	echo "adapter:"
	echo "  signing-key: |"
	indent signing.pem
} > adapter.yaml
{
	echo "scorer:"
	echo "  model:"
	echo "    keys:"
	echo "      - |"
	sed 's/^/        /' signing.pub.pem
} > scorer.yaml
# Compose bind-mounts secret files with their host permissions, and the
# containers run as uid 65532: let them read these (on a single-user demo
# host; in production use Kubernetes Secrets).
chmod 0644 signing.pem signing.pub.pem adapter.yaml scorer.yaml
echo "wrote deploy/secrets/{signing.pem,signing.pub.pem,adapter.yaml,scorer.yaml}"
