/**
 * Ramplight as an OpenFeature server provider (`@openfeature/server-sdk`, a peer dependency;
 * imported from `@ramplight/sdk/openfeature` so the SDK itself does not need it):
 *
 *     await OpenFeature.setProviderAndWait(new RamplightProvider(client));
 *     const flags = OpenFeature.getClient();
 *     const profile = await flags.getObjectValue("support_assistant_profile", {}, { conversation: id }, RECORD_EXPOSURE);
 *
 * The unit is the context's attribute named after the flag's assignment unit (a conversation id
 * under "conversation"), else its `targetingKey`; the other attributes are targeting attributes.
 * Evaluation is not an exposure: pass `RECORD_EXPOSURE` as the evaluation options when the value
 * is used at once, or run the behavior in `provider.exposure(...)` when it may fall back.
 * `track` sends a Ramplight event. Reasons and error codes follow the Python provider's mapping.
 */
import {
  ErrorCode,
  OpenFeatureEventEmitter,
  ProviderEvents,
  ProviderNotReadyError,
  StandardResolutionReasons,
  type EvaluationContext,
  type EvaluationDetails,
  type FlagEvaluationOptions,
  type FlagValue,
  type Hook,
  type HookContext,
  type HookHints,
  type JsonValue,
  type Provider,
  type ResolutionDetails,
  type TrackingEventDetails,
} from "@openfeature/server-sdk";

import { Client, ExposureScope } from "./client.js";
import type { Attributes, ErrorCode as RamplightErrorCode, Evaluation, ExpectedType, Reason } from "./evaluate.js";

export const PROVIDER_NAME = "ramplight";

/** A hook hint: true when the evaluated value is the behavior that runs now (an exposure). */
export const EXPOSURE_HINT = "ramplight.exposure";
/** Evaluation options recording the exposure after a successful evaluation. */
export const RECORD_EXPOSURE: FlagEvaluationOptions = { hookHints: { [EXPOSURE_HINT]: true } };

const REASONS: Record<Reason, string> = {
  rule: StandardResolutionReasons.TARGETING_MATCH,
  rollout: StandardResolutionReasons.SPLIT,
  default: StandardResolutionReasons.DEFAULT,
  off: StandardResolutionReasons.DISABLED,
  error: StandardResolutionReasons.ERROR,
};
const RAMPLIGHT_REASONS = new Map<string, Reason>(Object.entries(REASONS).map(([rl, of]) => [of, rl as Reason]));
const ERROR_CODES: Record<RamplightErrorCode, ErrorCode> = {
  flag_not_found: ErrorCode.FLAG_NOT_FOUND,
  type_mismatch: ErrorCode.TYPE_MISMATCH,
  invalid_flag: ErrorCode.PARSE_ERROR,
  general: ErrorCode.GENERAL,
};
// Keys of flagMetadata; contextId and version are OpenFeature's telemetry names (appendix D).
const UNIT_ID = "contextId";
const VERSION = "version";
const ASSIGNMENT_UNIT = "assignment_unit";
const RULE_ID = "rule_id";

type Expected = "boolean" | "string" | "number" | "object";

/** The unit id for `flagKey` (its assignment unit's attribute, else the targeting key) and the
 * remaining attributes. */
function unitAndAttributes(
  client: Client,
  flagKey: string | null,
  context: EvaluationContext | undefined,
  assignmentUnit?: string,
): [string | null, Attributes] {
  const { targetingKey, ...attributes } = context ?? {};
  const unit = assignmentUnit ?? (flagKey !== null ? client.assignmentUnit(flagKey) : undefined);
  let unitId: unknown = undefined;
  if (unit !== undefined && unit in attributes) {
    unitId = attributes[unit];
    delete attributes[unit];
  }
  if (typeof unitId !== "string" || unitId === "") unitId = targetingKey;
  return [typeof unitId === "string" && unitId !== "" ? unitId : null, attributes as Attributes];
}

export class RamplightProvider implements Provider {
  readonly metadata = { name: PROVIDER_NAME } as const;
  readonly runsOn = "server" as const;
  readonly events = new OpenFeatureEventEmitter();
  readonly hooks: Hook[];
  private isReady = false;
  private readonly warned = new Set<string>();

  /** `initTimeoutMs`: how long `initialize` waits for the first config. */
  constructor(
    readonly client: Client,
    private readonly initTimeoutMs = 5_000,
  ) {
    this.hooks = [new ExposureHook(client)];
    client.onConfigChange((flagsChanged) => {
      if (!this.isReady) {
        this.isReady = true;
        this.events.emit(ProviderEvents.Ready, { message: "the first config arrived" });
      } else {
        this.events.emit(ProviderEvents.ConfigurationChanged, { flagsChanged });
      }
    });
  }

  /** Waits up to `initTimeoutMs` for the first config; else the provider is in error (defaults
   * are served with PROVIDER_NOT_READY) and emits READY when it arrives. */
  async initialize(): Promise<void> {
    if (!(await this.client.ready(this.initTimeoutMs))) {
      throw new ProviderNotReadyError(`no Ramplight config within ${this.initTimeoutMs} ms`);
    }
    this.isReady = true;
  }

  async onClose(): Promise<void> {
    await this.client.close();
  }

  resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: EvaluationContext): Promise<ResolutionDetails<boolean>> {
    return Promise.resolve(this.resolve(flagKey, defaultValue, context, "boolean"));
  }

  resolveStringEvaluation(flagKey: string, defaultValue: string, context: EvaluationContext): Promise<ResolutionDetails<string>> {
    return Promise.resolve(this.resolve(flagKey, defaultValue, context, "string"));
  }

  resolveNumberEvaluation(flagKey: string, defaultValue: number, context: EvaluationContext): Promise<ResolutionDetails<number>> {
    return Promise.resolve(this.resolve(flagKey, defaultValue, context, "number"));
  }

  resolveObjectEvaluation<T extends JsonValue>(flagKey: string, defaultValue: T, context: EvaluationContext): Promise<ResolutionDetails<T>> {
    return Promise.resolve(this.resolve(flagKey, defaultValue, context, "object"));
  }

  private resolve<T>(flagKey: string, defaultValue: T, context: EvaluationContext, expected: Expected): ResolutionDetails<T> {
    const [unitId, attributes] = unitAndAttributes(this.client, flagKey, context);
    const unit = this.client.assignmentUnit(flagKey);
    if (unitId === null && unit !== undefined) {
      return {
        value: defaultValue,
        reason: StandardResolutionReasons.ERROR,
        errorCode: ErrorCode.TARGETING_KEY_MISSING,
        errorMessage: `flag ${JSON.stringify(flagKey)} needs the unit: a ${JSON.stringify(unit)} attribute or a targetingKey in the evaluation context`,
      };
    }
    const typed: ExpectedType = expected === "object" ? "json" : expected;
    const evaluation = this.client.evaluateTyped(flagKey, unitId ?? "", attributes, defaultValue, typed);
    const flagMetadata: Record<string, string | number> = {};
    if (unitId !== null) flagMetadata[UNIT_ID] = unitId;
    if (evaluation.flagVersion !== null) flagMetadata[VERSION] = evaluation.flagVersion;
    if (evaluation.assignmentUnit !== null) flagMetadata[ASSIGNMENT_UNIT] = evaluation.assignmentUnit;
    if (evaluation.ruleId !== null) flagMetadata[RULE_ID] = evaluation.ruleId;
    if (evaluation.reason === "error") {
      let errorCode = ERROR_CODES[evaluation.errorCode ?? "general"];
      if (errorCode === ErrorCode.FLAG_NOT_FOUND && !this.isReady) errorCode = ErrorCode.PROVIDER_NOT_READY;
      return {
        value: defaultValue,
        reason: StandardResolutionReasons.ERROR,
        errorCode,
        errorMessage: errorMessage(flagKey, evaluation, expected),
        flagMetadata,
      };
    }
    if (expected === "object" && (evaluation.value === null || typeof evaluation.value !== "object")) {
      return {
        value: defaultValue,
        reason: StandardResolutionReasons.ERROR,
        errorCode: ErrorCode.TYPE_MISMATCH,
        errorMessage: `flag ${JSON.stringify(flagKey)} is a ${typeof evaluation.value}, asked for an object`,
        flagMetadata,
      };
    }
    return {
      value: evaluation.value,
      reason: REASONS[evaluation.reason],
      variant: evaluation.variation ?? undefined,
      flagMetadata,
    };
  }

  /** `client.exposure` with the OpenFeature context: run the behavior, then `end()` the scope
   * (or use `withExposure`); the exposure, with the variation served after `fallback()`, is
   * recorded then. Without a unit, the default is served and nothing recorded. */
  exposure<T = unknown>(flagKey: string, context?: EvaluationContext, defaultValue?: T): ExposureScope<T> {
    const [unitId, attributes] = unitAndAttributes(this.client, flagKey, context);
    if (unitId === null) {
      const missing: Evaluation<T> = {
        flagKey,
        value: defaultValue as T,
        variation: null,
        reason: "error",
        ruleId: null,
        errorCode: "general",
        flagVersion: null,
        assignmentUnit: null,
      };
      return new ExposureScope<T>(this.client, missing, "", attributes, undefined);
    }
    return this.client.exposure(flagKey, unitId, attributes, defaultValue);
  }

  /** A Ramplight event: `value` is its value; the details' `assignment_unit`, `flag_key`,
   * `variation` and `trace_id` are its fields of those names, the others its properties. */
  track(trackingEventName: string, context: EvaluationContext, details: TrackingEventDetails = {}): void {
    const { value, ...rest } = details;
    const properties: Record<string, unknown> = { ...rest };
    const fields: Record<string, string> = {};
    for (const k of ["assignment_unit", "flag_key", "variation", "trace_id"]) {
      if (k in properties) {
        fields[k] = String(properties[k]);
        delete properties[k];
      }
    }
    const flagKey = fields["flag_key"];
    const unit = fields["assignment_unit"] ?? (flagKey !== undefined ? this.client.assignmentUnit(flagKey) : undefined);
    const [unitId] = unitAndAttributes(this.client, null, context, unit);
    if (unitId === null) {
      if (!this.warned.has(trackingEventName)) {
        this.warned.add(trackingEventName);
        this.client.log.warn(`track(${JSON.stringify(trackingEventName)}) needs a unit id (targetingKey); events without it are not recorded`);
      }
      return;
    }
    this.client.track(trackingEventName, unitId, {
      value: typeof value === "number" ? value : undefined,
      properties: Object.keys(properties).length > 0 ? properties : undefined,
      assignmentUnit: unit,
      flagKey,
      variation: fields["variation"],
      traceId: fields["trace_id"],
    });
  }
}

function errorMessage(flagKey: string, evaluation: Evaluation<unknown>, expected: Expected): string {
  switch (evaluation.errorCode) {
    case "flag_not_found":
      return `no flag ${JSON.stringify(flagKey)}`;
    case "type_mismatch":
      return `flag ${JSON.stringify(flagKey)} is not a ${expected}`;
    case "invalid_flag":
      return `flag ${JSON.stringify(flagKey)} could not be compiled`;
    default:
      return `flag ${JSON.stringify(flagKey)} could not be evaluated`;
  }
}

/** Records the exposure of an evaluation asked for with the `EXPOSURE_HINT` hint, as the assigned
 * variation served; evaluations without it record nothing. */
class ExposureHook implements Hook {
  constructor(private readonly client: Client) {}

  after(hookContext: Readonly<HookContext<FlagValue>>, details: EvaluationDetails<FlagValue>, hints?: HookHints): void {
    if (!hints?.[EXPOSURE_HINT] || details.errorCode !== undefined || details.variant === undefined) return;
    const metadata = details.flagMetadata;
    const version = metadata[VERSION];
    const evaluation: Evaluation = {
      flagKey: details.flagKey,
      value: details.value,
      variation: details.variant,
      reason: RAMPLIGHT_REASONS.get(String(details.reason)) ?? "default",
      ruleId: RULE_ID in metadata ? String(metadata[RULE_ID]) : null,
      errorCode: null,
      flagVersion: typeof version === "number" ? version : null,
      assignmentUnit: typeof metadata[ASSIGNMENT_UNIT] === "string" ? (metadata[ASSIGNMENT_UNIT] as string) : null,
    };
    const [, attributes] = unitAndAttributes(this.client, details.flagKey, hookContext.context);
    new ExposureScope(this.client, evaluation, String(metadata[UNIT_ID]), attributes, undefined).end();
  }
}
