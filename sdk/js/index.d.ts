// Types for @switchboard/client (index.js).

export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';
export declare const STATES: readonly State[];

/** What the module needs of a WebSocket: the browser's, or the ws package's. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface SwitchboardOptions {
  /** Defaults to globalThis.WebSocket; in Node 20, pass require('ws') / import WebSocket from 'ws'. */
  WebSocket?: WebSocketConstructor;
  /** Reconnect after an unexpected close. Default true. */
  reconnect?: boolean;
  /** ms before the first retry. Default 500. */
  backoffInitial?: number;
  /** ms: no delay is longer. Default 10000. */
  backoffMax?: number;
  /** Growth per failed attempt. Default 2. */
  backoffFactor?: number;
  /** 0..1: each delay is cut by up to this share, at random. Default 0.5. */
  backoffJitter?: number;
  /** Consecutive failed attempts before giving up (state 'closed'). Default Infinity. */
  maxRetries?: number;
  /** ms for a connection to open. Default 10000. */
  connectTimeout?: number;
  /** ms: request()'s default timeout (0 or Infinity: none). Default 10000. */
  requestTimeout?: number;
  /** Messages kept while offline; more are refused and reported. Default 100. */
  queueSize?: number;
  /** Resume the gateway session (sb:resume) on reconnect. Default true. */
  recovery?: boolean;
  /** ms to wait for sb:resumed before carrying on as a fresh session. Default 5000. */
  resumeTimeout?: number;
  /** Connect in the constructor. Default true. */
  autoConnect?: boolean;
}

/** The gateway's exception frame: {"status":"error","message":M,"cause":{...}}. */
export interface ExceptionData {
  status?: string;
  message: string;
  cause?: { pattern: string; data?: unknown };
}

export declare class ServerError extends Error {
  readonly name: 'ServerError';
  readonly status?: string;
  readonly cause?: { pattern: string; data?: unknown };
  readonly data: unknown;
  readonly frame: Frame;
}

export declare class RequestError extends Error {
  readonly name: 'RequestError';
  readonly code: 'timeout' | 'overflow' | 'disconnected' | 'closed';
}

/** A frame from the gateway. room/offset ride on room messages when recovery is on. */
export interface Frame<D = unknown> {
  event: string;
  data?: D;
  id?: number | string;
  room?: string;
  offset?: number;
  [key: string]: unknown;
}

export interface RoomPosition {
  epoch: unknown;
  offset: number;
}

export interface RoomRecovery {
  recovered: boolean;
  /** Messages the gateway replays for this room (0 when not recovered). */
  replayed: number;
  epoch?: unknown;
  /** false: the session was not resumed, the app must join again. */
  member?: boolean;
}

export interface RecoveryDetail {
  /** true: a new session (unknown or expired token, no answer): rejoin and reload everything. */
  fresh: boolean;
  timedOut?: boolean;
  resync?: boolean;
  room?: string;
  data?: unknown;
  client?: unknown;
  previous?: unknown;
  rooms?: Record<string, RoomRecovery>;
}

export interface SessionDetail {
  client: unknown;
  token: string | null;
  ttl?: number;
  resumed: boolean;
  previous?: unknown;
}

export interface ClientEvents {
  state: { state: State; [key: string]: unknown };
  connecting: { attempt: number };
  open: { reconnect: boolean; resuming: boolean };
  reconnecting: { attempt: number; delay?: number; code?: number; reason?: string };
  closed: { code?: number; reason?: string; willReconnect: false };
  disconnect: { code: number; reason: string; willReconnect: boolean };
  error: { error: unknown; where: string };
  badframe: { reason: string; raw: unknown; value?: unknown };
  overflow: { event?: string; data?: unknown; id?: number; frame: string; reason: 'queue full' | 'closed' };
  session: SessionDetail;
  recovery: RecoveryDetail;
  message: { message: unknown; raw: string };
}

export declare class Switchboard {
  constructor(url: string | (() => string), options?: SwitchboardOptions);
  readonly url: string | (() => string);
  readonly options: Required<Omit<SwitchboardOptions, 'WebSocket'>> & { WebSocket?: WebSocketConstructor };
  readonly state: State;
  readonly session: { client: unknown; token: string | null; ttl?: number } | null;
  readonly clientId: unknown;
  /** Messages waiting for a connection. */
  readonly queued: number;
  /** The position held per room. */
  readonly rooms: Record<string, RoomPosition>;
  readonly stats: { duplicates: number; overflowed: number; badFrames: number };

  on<D = any>(event: string, fn: (data: D, frame: Frame<D>) => void): this;
  off(event: string, fn?: (data: any, frame: Frame) => void): this;
  addEventListener<K extends keyof ClientEvents>(type: K, fn: (detail: ClientEvents[K]) => void): this;
  removeEventListener<K extends keyof ClientEvents>(type: K, fn: (detail: ClientEvents[K]) => void): this;

  connect(): this;
  close(code?: number, reason?: string): this;

  /** true: sent or queued; false: the offline queue was full (reported to 'overflow'). */
  emit(event: string, data?: unknown): boolean;
  /** Settled by the reply carrying this request's id, its exception, or the timeout. */
  request<R = any>(event: string, data?: unknown, options?: { timeout?: number }): Promise<R>;

  /** The delay before retry number `attempt` (0-based), in ms. */
  backoffDelay(attempt: number, random?: () => number): number;
  /** Stop tracking (and resuming) a room the app left. */
  forgetRoom(room: string): void;
}

export default Switchboard;
