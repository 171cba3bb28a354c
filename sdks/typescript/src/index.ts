/** Ramplight for Node.js: local flag evaluation, exposures when the behavior runs, evidence in batches. */
export { position, slotOf, SLOTS, threshold } from "./bucketing.js";
export { Client, ExposureScope, SDK_NAME, type ClientOptions, type ScoreOptions, type TrackOptions } from "./client.js";
export {
  CompiledConfig,
  type Attributes,
  type ErrorCode,
  type Evaluation,
  type ExpectedType,
  type FlagDoc,
  type Reason,
  type SdkConfig,
  type SegmentDoc,
} from "./evaluate.js";
export { consoleLogger, type Logger } from "./log.js";
export { DROPPED_EVENT, type DropReason, type Kind, type QueueStats } from "./queue.js";
export { Backoff, type BackoffOptions } from "./retry.js";
export { SseParser, type SseEvent } from "./sse.js";
