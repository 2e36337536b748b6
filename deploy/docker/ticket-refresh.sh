#!/usr/bin/env bash
# krbouncer-ticket-refresh - keep a Kerberos ticket cache fresh from a keytab, for a pooler
# container that sees only the cache (not the keytab) through a shared emptyDir.
#
# Environment:
#   KRB5_PRINCIPAL      the client principal (required), e.g. astro_user@EXAMPLE.COM
#   KRB5_CLIENT_KTNAME  its keytab (default /etc/krb5-keytab/client.keytab)
#   KRB5CCNAME          FILE: cache to maintain (default FILE:/run/krb5/ccache/krb5cc)
#   KINIT_INTERVAL      seconds between renewals (default 3600; keep it well under the
#                       ticket lifetime in krb5.conf)
#   KINIT_RETRY         seconds before retrying a failed kinit (default 30)
#
# kinit writes into a temporary cache that is renamed over the shared one: a reader never sees
# a half-written cache. krbouncer keeps no credential handle between logins, so the next
# upstream login uses the new ticket.
set -euo pipefail
principal=${KRB5_PRINCIPAL:?KRB5_PRINCIPAL must be set}
keytab=${KRB5_CLIENT_KTNAME:-/etc/krb5-keytab/client.keytab}
cache=${KRB5CCNAME:-FILE:/run/krb5/ccache/krb5cc}
path=${cache#FILE:}
[[ $path == /* ]] || { echo "ticket-refresh: KRB5CCNAME must be FILE:/absolute/path, got $cache" >&2; exit 1; }
trap 'exit 0' TERM INT
while :; do
    if kinit -k -t "$keytab" -c "FILE:$path.new" "$principal"; then
        mv -f "$path.new" "$path"
        klist -c "FILE:$path" | sed -n '1,5p'
        sleep "${KINIT_INTERVAL:-3600}" & wait $!
    else
        echo "ticket-refresh: kinit failed for $principal, retrying" >&2
        sleep "${KINIT_RETRY:-30}" & wait $!
    fi
done
