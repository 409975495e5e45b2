// control-tower-client: a typed Node.js client and worker helper for Control Tower.
export { ControlTower, follow, statusFromName } from "./client";
export type { CallExtras, ConnectOptions, StatusName, TaskFilter, TaskSpecInput, UnaryMethod } from "./client";
export { ControlTowerError } from "./errors";
export type { FieldViolation } from "./errors";
export { Retryable, TaskContext, Worker } from "./worker";
export type { Handler, WorkerOptions } from "./worker";
export { TaskStatus } from "./generated/controltower/v1/tasks";
export type { Task, TaskEvent, TaskSpec } from "./generated/controltower/v1/tasks";
export type { AuditEvent } from "./generated/controltower/v1/audit";
export * as audit from "./generated/controltower/v1/audit";
export * as cwom from "./generated/controltower/v1/cwom";
export * as tasks from "./generated/controltower/v1/tasks";
export * as workers from "./generated/controltower/v1/workers";
