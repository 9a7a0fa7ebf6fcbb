# Shared by the azd hooks (sourced, not run).

# retry WHAT COMMAND [ARG...]: run COMMAND up to 10 times, 30 s apart. Role assignments take
# minutes to propagate after provisioning, and a freshly deployed Functions host answers key
# requests with errors for a while, so a first failure is expected and not fatal.
retry() {
  retry_what=$1
  shift
  retry_attempt=1
  until "$@"; do
    if [ "$retry_attempt" -ge 10 ]; then
      echo "$retry_what: still failing after $retry_attempt attempts" >&2
      return 1
    fi
    echo "$retry_what: attempt $retry_attempt failed; retrying in 30 s" >&2
    retry_attempt=$((retry_attempt + 1))
    sleep 30
  done
}
