// The typed layer over the generated @grpc/grpc-js clients: `new ControlTower(target, { token })`.
import {
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  credentials as grpcCredentials,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";

import { type AuditEvent, AuditFilter, AuditServiceClient } from "./generated/controltower/v1/audit";
import { CwomServiceClient } from "./generated/controltower/v1/cwom";
import {
  type DeepPartial,
  type EnqueueTaskResponse,
  type EnqueueTaskResult,
  type Task,
  type TaskEvent,
  TaskServiceClient,
  TaskSpec,
  TaskStatus,
} from "./generated/controltower/v1/tasks";
import { WorkerServiceClient } from "./generated/controltower/v1/workers";
import { ControlTowerError } from "./errors";

/** A TaskSpec in its TypeScript form; every field may be left out (the server fills in the defaults). */
export type TaskSpecInput = DeepPartial<TaskSpec>;

/** A unary method of a generated client, in its (request, metadata, options, callback) form. */
export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

export interface ConnectOptions {
  /** Sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  /** TLS credentials; plaintext when absent. */
  credentials?: ChannelCredentials;
  channelOptions?: ChannelOptions;
}

export interface CallExtras {
  /** Sent as `x-trace-id`: the task and its audit entries carry it. */
  traceId?: string;
  /** Milliseconds before the call gives up with DEADLINE_EXCEEDED. */
  timeoutMs?: number;
}

export interface TaskFilter {
  /** "queued", "running", "completed", "failed" or "cancelled". */
  status?: StatusName;
  operation?: string;
  requestedByKind?: string;
  targetRepo?: string;
  workerId?: string;
}

export type StatusName = "queued" | "running" | "completed" | "failed" | "cancelled";

export function statusFromName(name: StatusName | undefined): TaskStatus {
  if (!name) return TaskStatus.TASK_STATUS_UNSPECIFIED;
  const value = TaskStatus[`TASK_STATUS_${name.toUpperCase()}` as keyof typeof TaskStatus];
  if (value === undefined) throw new RangeError(`unknown task status "${name}"`);
  return value;
}

/** A connection to a Control Tower server. Close it when done. */
export class ControlTower {
  /** The generated clients, for every RPC the typed methods below do not cover. */
  readonly tasks: TaskServiceClient;
  readonly workers: WorkerServiceClient;
  readonly cwom: CwomServiceClient;
  readonly audit: AuditServiceClient;
  private readonly token?: string;

  constructor(target: string, options: ConnectOptions = {}) {
    const address = target.replace(/^https?:\/\//, "");
    const creds = options.credentials ?? grpcCredentials.createInsecure();
    this.tasks = new TaskServiceClient(address, creds, options.channelOptions);
    // The other clients share the first one's channel.
    const shared = { ...options.channelOptions, channelOverride: this.tasks.getChannel() };
    this.workers = new WorkerServiceClient(address, creds, shared);
    this.cwom = new CwomServiceClient(address, creds, shared);
    this.audit = new AuditServiceClient(address, creds, shared);
    this.token = options.token;
  }

  close(): void {
    this.tasks.close();
  }

  /** Metadata for one call: the bearer token and the trace id. */
  metadata(traceId?: string): Metadata {
    const metadata = new Metadata();
    if (this.token) metadata.set("authorization", `Bearer ${this.token}`);
    if (traceId) metadata.set("x-trace-id", traceId);
    return metadata;
  }

  /** Calls any unary RPC with this client's credentials; a refusal rejects with ControlTowerError. */
  call<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, extras: CallExtras = {}): Promise<Res> {
    const options: Partial<CallOptions> = extras.timeoutMs ? { deadline: Date.now() + extras.timeoutMs } : {};
    return new Promise((resolve, reject) => {
      method(request, this.metadata(extras.traceId), options, (error, response) =>
        error ? reject(ControlTowerError.fromServiceError(error)) : resolve(response),
      );
    });
  }

  // Tasks.

  /** Enqueues one task and resolves to it (an idempotency key that was seen before resolves to the first task). */
  async enqueue(spec: TaskSpecInput, extras: CallExtras & { createCwom?: boolean } = {}): Promise<Task> {
    return (await this.enqueueRequest(spec, extras)).task!;
  }

  /** Like enqueue, with the whole response: whether the task was created, and its work model ids. */
  enqueueRequest(spec: TaskSpecInput, extras: CallExtras & { createCwom?: boolean } = {}): Promise<EnqueueTaskResponse> {
    const request = { spec: TaskSpec.fromPartial(spec), createCwom: extras.createCwom ?? false };
    return this.call(this.tasks.enqueueTask.bind(this.tasks), request, extras);
  }

  /** Enqueues a batch in one call: one result per spec, in order; a refused item does not refuse the batch. */
  async enqueueMany(specs: TaskSpecInput[], extras: CallExtras = {}): Promise<EnqueueTaskResult[]> {
    const requests = specs.map((spec) => ({ spec: TaskSpec.fromPartial(spec), createCwom: false }));
    return (await this.call(this.tasks.enqueueTasks.bind(this.tasks), { requests }, extras)).results;
  }

  get(id: string): Promise<Task> {
    return this.call(this.tasks.getTask.bind(this.tasks), { id });
  }

  /** Every matching task, newest first, fetched page by page as the loop asks for them. */
  async *list(filter: TaskFilter = {}, pageSize = 100): AsyncGenerator<Task> {
    let pageToken = "";
    do {
      const page = await this.call(this.tasks.listTasks.bind(this.tasks), {
        status: statusFromName(filter.status),
        operation: filter.operation ?? "",
        requestedByKind: filter.requestedByKind ?? "",
        targetRepo: filter.targetRepo ?? "",
        workerId: filter.workerId ?? "",
        pageSize,
        pageToken,
      });
      yield* page.tasks;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  cancel(id: string, reason = ""): Promise<Task> {
    return this.call(this.tasks.cancelTask.bind(this.tasks), { id, reason });
  }

  /**
   * Task transitions as they happen (or those after `cursor`). Resolves once the server has fixed the starting point,
   * so a task enqueued after the await is seen. Leave the loop (`break`) or abort `signal` to stop; either ends the
   * stream cleanly.
   */
  async watch(filter: TaskFilter & { cursor?: string } = {}, signal?: AbortSignal): Promise<AsyncGenerator<TaskEvent>> {
    const stream = this.tasks.watchTasks(
      {
        status: statusFromName(filter.status),
        operation: filter.operation ?? "",
        requestedByKind: filter.requestedByKind ?? "",
        targetRepo: filter.targetRepo ?? "",
        workerId: filter.workerId ?? "",
        cursor: filter.cursor ?? "",
      },
      this.metadata(),
    );
    const events = follow<TaskEvent>(stream, signal);
    // The server sends its headers after choosing where the stream starts; a refusal arrives as the status instead.
    await new Promise<void>((resolve) => {
      stream.once("metadata", () => resolve());
      stream.once("status", () => resolve());
    });
    return events;
  }

  // Audit.

  /** Audit entries, newest first; filter by entity, trace id, actor or action. */
  async *auditEvents(filter: Partial<AuditFilter> = {}): AsyncGenerator<AuditEvent> {
    let pageToken = "";
    do {
      const page = await this.call(this.audit.listAuditEvents.bind(this.audit), {
        filter: AuditFilter.fromPartial(filter),
        pageSize: 500,
        pageToken,
      });
      yield* page.events;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }
}

/**
 * The messages of a server stream as an async iterator. Cancelling (by the caller leaving the loop or by `signal`) is
 * a normal end, not an error; any other failure is thrown as ControlTowerError.
 */
export function follow<T>(stream: ClientReadableStream<T>, signal?: AbortSignal): AsyncGenerator<T> {
  // Listen from the start: a failure that arrives before the first read is kept for the loop, never thrown unheard.
  let failure: ServiceError | undefined;
  stream.on("error", (error: ServiceError) => (failure ??= error));
  const stop = () => stream.cancel();
  signal?.addEventListener("abort", stop, { once: true });
  return (async function* () {
    try {
      for await (const message of stream) yield message as T;
    } catch (error) {
      failure ??= error as ServiceError;
    } finally {
      signal?.removeEventListener("abort", stop);
      stream.cancel();
    }
    if (failure && failure.code !== status.CANCELLED) {
      throw failure.code !== undefined ? ControlTowerError.fromServiceError(failure) : failure;
    }
  })();
}
