#!/usr/bin/env bash
# Installs the Debian packages callwhisper and its tests use, only when missing.
# PostgreSQL and Redis are installed here but started by the test fixtures
# when no server is already listening.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have sipp       || need+=(sip-tester)
have baresip    || need+=(baresip-core)
have espeak-ng  || need+=(espeak-ng)
have sox        || need+=(sox)
have redis-server || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
ldconfig -p 2>/dev/null | grep -q libsndfile.so.1 || need+=(libsndfile1)
# Kernel forwarding of bridged RTP (media.kernel_forwarding): the library the engine
# loads, and nft, which its tests read the ruleset with.
ldconfig -p 2>/dev/null | grep -q libnftables.so.1 || need+=(libnftables1)
have nft || [ -x /usr/sbin/nft ] || need+=(nftables)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${need[*]}"
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
