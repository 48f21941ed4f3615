import { describe, expect, it } from "vitest";
import { kumodQueueSummary, parsePrometheus } from "../../scripts/lib/prometheus.ts";

/** Shaped like kumod 2026.x /metrics output (names per kumomta.md §4; kcli queue-summary reads the same). */
const KUMOD_METRICS = `# HELP scheduled_count number of messages in the scheduled queue
# TYPE scheduled_count gauge
scheduled_count{queue="example.com"} 120
scheduled_count{queue="campaign_a:tenant_x@example.net"} 30
scheduled_count{queue="tsa.log_hook"} 0
scheduled_count{queue="weird \\"quoted\\" {queue}"} 2
# HELP ready_count number of messages in the ready queue
# TYPE ready_count gauge
ready_count{service="smtp_client:unspecified->mx.sink.kumomta.svc.cluster.local@smtp_client"} 45
ready_count{service="smtp_client:unspecified->example.net@smtp_client"} 5
# HELP connection_count number of active connections
# TYPE connection_count gauge
connection_count{service="smtp_client:unspecified->mx.sink.kumomta.svc.cluster.local@smtp_client"} 10
# HELP total_messages_delivered total number of messages ever delivered
# TYPE total_messages_delivered counter
total_messages_delivered{service="smtp_client:unspecified->mx.sink.kumomta.svc.cluster.local@smtp_client"} 98765
total_messages_transfail{service="smtp_client:unspecified->mx.sink.kumomta.svc.cluster.local@smtp_client"} 321
total_messages_fail{service="smtp_client:unspecified->mx.sink.kumomta.svc.cluster.local@smtp_client"} 12
total_messages_received{service="http_listener"} 99000
total_messages_received{service="esmtp_listener"} 100
# HELP memory_usage number of bytes of used memory
# TYPE memory_usage gauge
memory_usage 123456789
disk_free_percent{name="data"} 87.5
redis_operation_latency_bucket{service="redis",le="+Inf"} 4 1700000000000
lua_event_latency{event="get_queue_config",quantile="0.5"} NaN
`;

describe("Prometheus text parser", () => {
  it("reads names, labels (with escapes and braces), values, timestamps, NaN and +Inf", () => {
    const samples = parsePrometheus(KUMOD_METRICS);
    expect(samples).toHaveLength(16);
    expect(samples[3]).toEqual({ name: "scheduled_count", labels: { queue: 'weird "quoted" {queue}' }, value: 2 });
    expect(samples.find((s) => s.name === "memory_usage")).toEqual({
      name: "memory_usage",
      labels: {},
      value: 123456789,
    });
    expect(samples.find((s) => s.name === "redis_operation_latency_bucket")?.labels.le).toBe("+Inf");
    expect(samples.find((s) => s.name === "lua_event_latency")?.value).toBeNaN();
  });
  it("summarises kumod queues per pod", () => {
    const q = kumodQueueSummary(parsePrometheus(KUMOD_METRICS), 2);
    expect(q).toEqual({
      scheduled: 152,
      ready: 50,
      connections: 10,
      delivered: 98765,
      transientFailures: 321,
      permanentFailures: 12,
      received: 99100,
      topScheduled: [
        { queue: "example.com", count: 120 },
        { queue: "campaign_a:tenant_x@example.net", count: 30 },
      ],
      topReady: [
        { queue: "smtp_client:unspecified->mx.sink.kumomta.svc.cluster.local@smtp_client", count: 45 },
        { queue: "smtp_client:unspecified->example.net@smtp_client", count: 5 },
      ],
    });
  });
  it("reads an idle kumod (pruned queues) as zero", () => {
    expect(kumodQueueSummary(parsePrometheus("memory_usage 1\n")).scheduled).toBe(0);
  });
  it("reports malformed lines with their number", () => {
    expect(() => parsePrometheus('ok 1\nbad{queue="x} 1\n')).toThrow(/line 2/);
    expect(() => parsePrometheus("novalue\n")).toThrow(/line 1/);
  });
});
