// Errors of Control Tower calls: the gRPC code plus the server's machine-readable details.
//
// The server puts a `google.rpc.Status` in the `grpc-status-details-bin` trailer. Its details carry an `ErrorInfo`
// (the policy or precondition code, e.g. REPO_NOT_ALLOWED) and a `BadRequest` (the invalid fields). Those two
// messages are small and stable, so they are decoded here with the protobuf wire reader rather than generated from
// the googleapis protos.
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Metadata, status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";

const ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo";
const BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest";

export interface FieldViolation {
  field: string;
  description: string;
}

/** A call the server refused or could not answer. */
export class ControlTowerError extends Error {
  constructor(
    /** The gRPC status code, e.g. `status.INVALID_ARGUMENT`. */
    readonly code: GrpcStatus,
    /** The server's message. */
    readonly details: string,
    /** The machine-readable reason when the server gave one: a policy code or e.g. LEASE_NOT_HELD. */
    readonly reason = "",
    /** The invalid fields of a refused request. */
    readonly fieldViolations: FieldViolation[] = [],
  ) {
    super(`${GrpcStatus[code] ?? code}: ${details}${reason ? ` (${reason})` : ""}`);
    this.name = "ControlTowerError";
  }

  static fromServiceError(error: ServiceError): ControlTowerError {
    const { reason, fieldViolations } = decodeStatusDetails(error.metadata);
    return new ControlTowerError(error.code, error.details ?? error.message, reason, fieldViolations);
  }
}

function decodeStatusDetails(metadata: Metadata | undefined): { reason: string; fieldViolations: FieldViolation[] } {
  const found = { reason: "", fieldViolations: [] as FieldViolation[] };
  const raw = metadata?.get("grpc-status-details-bin")[0];
  if (!(raw instanceof Buffer)) return found;
  try {
    // google.rpc.Status: 3 = repeated Any details.
    for (const any of fields(raw, 3)) {
      const typeUrl = text(fields(any, 1)[0]);
      const value = fields(any, 2)[0] ?? new Uint8Array();
      if (typeUrl === ERROR_INFO) {
        found.reason = text(fields(value, 1)[0]);
      } else if (typeUrl === BAD_REQUEST) {
        found.fieldViolations = fields(value, 1).map((v) => ({
          field: text(fields(v, 1)[0]),
          description: text(fields(v, 2)[0]),
        }));
      }
    }
  } catch {
    // Undecodable details leave the error with its code and message, which is still a faithful error.
  }
  return found;
}

/** The length-delimited values of one field number in an encoded message. */
function fields(bytes: Uint8Array, wanted: number): Uint8Array[] {
  const reader = new BinaryReader(bytes);
  const values: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === wanted && wireType === 2) values.push(reader.bytes());
    else reader.skip(wireType);
  }
  return values;
}

function text(bytes: Uint8Array | undefined): string {
  return bytes ? Buffer.from(bytes).toString("utf8") : "";
}
