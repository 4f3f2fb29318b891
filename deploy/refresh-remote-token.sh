#!/usr/bin/env bash
# Mints a new bound, expiring token for the controller's remote ServiceAccount in a public cluster
# (TokenRequest, `kubectl create token`) and puts it into the Secret the Deployment mounts in the
# private cluster (key `token`); kubelet then updates the mounted file and the controller uses the new
# token from its next API call, without a restart. Older tokens are revoked after REVOKE_AFTER.
# Run it on a schedule shorter than DURATION (a CronJob, or an external rotator); see deploy/README.md.
#
# Each token is bound to a Secret of its own in the public cluster (an "anchor", holding no data):
# deleting the anchor revokes that token at once, before it expires.
#
# Environment (all optional):
#   PUBLIC_KUBECONFIG, PUBLIC_CONTEXT    kubectl's kubeconfig and context for the public cluster
#   PRIVATE_KUBECONFIG, PRIVATE_CONTEXT  the same for the private cluster
#   DURATION       the token's lifetime (default 24h; the API server may shorten it)
#   REVOKE_AFTER   seconds to wait after delivering the token before revoking every older one
#                  (default 120: kubelet takes up to its sync period, 1 minute by default, to update a
#                  mounted Secret); "never" keeps them until they expire
#   TOKEN_FILE     write the token to this file instead of the private Secret, and revoke nothing
#                  (first setup, or a rotator that delivers it some other way)
#   REMOTE_NAMESPACE, SERVICE_ACCOUNT    default internal-services-remote, internal-service-controller-remote
#   SECRET_NAMESPACE, SECRET, SECRET_KEY default internal-services, isc-remote-kubeconfig, token
#
# Needs, in the public cluster: create on serviceaccounts/token for the ServiceAccount, and create,
# list and delete on secrets in REMOTE_NAMESPACE (the anchors); in the private cluster: get and patch
# on the Secret. It never prints a token.
set -euo pipefail

remote_ns="${REMOTE_NAMESPACE:-internal-services-remote}"
sa="${SERVICE_ACCOUNT:-internal-service-controller-remote}"
secret_ns="${SECRET_NAMESPACE:-internal-services}"
secret="${SECRET:-isc-remote-kubeconfig}"
key="${SECRET_KEY:-token}"
duration="${DURATION:-24h}"
revoke_after="${REVOKE_AFTER:-120}"
selector="app.kubernetes.io/name=internal-service-controller,app.kubernetes.io/component=remote-token,internal-services.appstudio.redhat.com/service-account=${sa}"

public=(kubectl ${PUBLIC_KUBECONFIG:+"--kubeconfig=$PUBLIC_KUBECONFIG"} ${PUBLIC_CONTEXT:+"--context=$PUBLIC_CONTEXT"})
private=(kubectl ${PRIVATE_KUBECONFIG:+"--kubeconfig=$PRIVATE_KUBECONFIG"} ${PRIVATE_CONTEXT:+"--context=$PRIVATE_CONTEXT"})

if [[ "$revoke_after" != never && ! "$revoke_after" =~ ^[0-9]+$ ]]; then
  echo "REVOKE_AFTER must be a number of seconds or \"never\", got \"$revoke_after\"" >&2
  exit 2
fi

tmp="$(mktemp -d)"
anchor=""
delivered=""
cleanup() {
  rm -rf "$tmp"
  # A token minted but never delivered must not stay valid.
  if [[ -n "$anchor" && -z "$delivered" ]]; then
    "${public[@]}" -n "$remote_ns" delete secret "$anchor" --ignore-not-found >/dev/null || true
  fi
}
trap cleanup EXIT

anchor="$("${public[@]}" -n "$remote_ns" create -o jsonpath='{.metadata.name}' -f - <<EOF
apiVersion: v1
kind: Secret
type: Opaque
metadata:
  generateName: ${sa}-
  labels:
    app.kubernetes.io/name: internal-service-controller
    app.kubernetes.io/component: remote-token
    internal-services.appstudio.redhat.com/service-account: ${sa}
  annotations:
    internal-services.appstudio.redhat.com/purpose: "Deleting this Secret revokes the ${sa} token bound to it."
EOF
)"
umask 077
"${public[@]}" -n "$remote_ns" create token "$sa" --duration="$duration" \
  --bound-object-kind=Secret --bound-object-name="$anchor" >"$tmp/token"

if [[ -n "${TOKEN_FILE:-}" ]]; then
  cp "$tmp/token" "$TOKEN_FILE.tmp"
  mv "$TOKEN_FILE.tmp" "$TOKEN_FILE"
  delivered=yes
  echo "wrote a token bound to secret/$anchor (${duration}) to $TOKEN_FILE"
  exit 0
fi

# Server-side apply of the one key, so the Secret's kubeconfig stays as it is.
"${private[@]}" -n "$secret_ns" create secret generic "$secret" --from-file="$key=$tmp/token" \
  --dry-run=client -o yaml |
  "${private[@]}" apply --server-side --force-conflicts --field-manager=isc-refresh-remote-token -f - >/dev/null
delivered=yes
echo "updated secret/$secret in $secret_ns with a token bound to secret/$anchor (${duration})"

if [[ "$revoke_after" == never ]]; then exit 0; fi
older="$("${public[@]}" -n "$remote_ns" get secrets -l "$selector" \
  --field-selector="metadata.name!=$anchor" -o name)"
if [[ -z "$older" ]]; then exit 0; fi
if ((revoke_after > 0)); then
  echo "revoking $(wc -w <<<"$older") older token(s) in ${revoke_after}s, once kubelet has updated the mounted Secret"
  sleep "$revoke_after"
fi
"${public[@]}" -n "$remote_ns" delete secrets -l "$selector" --field-selector="metadata.name!=$anchor"
