# Sourced by recipes.test.ts when grpcurl is not on the PATH: maps the grpcurl flags that the README's recipes use onto
# `buf curl`, which speaks the same gRPC with server reflection. An unmapped flag fails loudly.
grpcurl() {
  local args=() target="" method=""
  while [ $# -gt 0 ]; do
    case "$1" in
      -plaintext) shift ;;
      -H) args+=(-H "$2"); shift 2 ;;
      -d) if [ "$2" = "@" ]; then args+=(-d @-); else args+=(-d "$2"); fi; shift 2 ;;
      -*) echo "grpcurl via buf curl: the flag $1 is not mapped" >&2; return 2 ;;
      *) if [ -z "$target" ]; then target="$1"; else method="$1"; fi; shift ;;
    esac
  done
  if [ "$method" = list ]; then
    buf curl --protocol grpc --http2-prior-knowledge --list-services "http://$target"
  else
    buf curl --protocol grpc --http2-prior-knowledge "${args[@]}" "http://$target/$method"
  fi
}
