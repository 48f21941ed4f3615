import { GeneratedBodyWriter } from "./body-writer.ts";
import { type BodyFrame, fileBody } from "./inject-payload.ts";
import type { Batch, BatchSource } from "./inject-runner.ts";
import type { RecipientGenerator } from "./recipients.ts";

/** Batches of generated recipients, built only when the runner asks for the next request. */
export class GeneratedSource implements BatchSource {
  private readonly writer: GeneratedBodyWriter;
  constructor(
    frame: BodyFrame,
    generator: RecipientGenerator,
    private readonly batch: number,
  ) {
    this.writer = new GeneratedBodyWriter(frame, generator);
  }
  next(): Batch | undefined {
    return this.writer.next(this.batch);
  }
}

/** The payload file's own recipients, split into --batch sized requests and sent once. */
export class FileSource implements BatchSource {
  private offset = 0;
  constructor(
    private readonly frame: BodyFrame,
    private readonly recipients: readonly unknown[],
    private readonly batch: number,
  ) {}
  next(): Batch | undefined {
    if (this.offset >= this.recipients.length) return undefined;
    const slice = this.recipients.slice(this.offset, this.offset + this.batch);
    this.offset += slice.length;
    return { body: fileBody(this.frame, slice), recipients: slice.length };
  }
}
