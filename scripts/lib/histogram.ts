import * as hdr from "hdr-histogram-js";

/**
 * Request latencies in a fixed-size HDR histogram (microseconds, 1 µs to 1 h, 3 significant digits): memory does
 * not grow with the number of requests, percentiles stay within 0.1 %.
 */
export class LatencyHistogram {
  private readonly h = hdr.build({
    bitBucketSize: 32,
    autoResize: false,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 3,
    useWebAssembly: false,
  });

  recordMs(ms: number): void {
    const us = Math.round(ms * 1000);
    this.h.recordValue(Math.min(Math.max(us, 1), 3_600_000_000));
  }

  get count(): number {
    return this.h.totalCount;
  }

  /** Percentile in milliseconds (0 when empty). */
  percentileMs(p: number): number {
    return this.h.totalCount === 0 ? 0 : this.h.getValueAtPercentile(p) / 1000;
  }

  maxMs(): number {
    return this.h.totalCount === 0 ? 0 : this.h.maxValue / 1000;
  }
}
