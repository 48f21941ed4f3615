/**
 * Unknown-field check. kubernetes-models' validators accept any extra property, so a misspelt or misplaced field
 * (`readOnlyRootFileSystem`, `securityContext` at pod level with container fields) would pass them and be
 * silently dropped by the API server. This walks each object against the TypeScript interfaces kubernetes-models
 * generates from the same OpenAPI definitions, using the TypeScript checker itself, and reports every key the
 * interface does not declare.
 */
import path from "node:path";
import ts from "typescript";
import type { K8sObject } from "./render.ts";

const KINDS_FILE = path.join(import.meta.dirname, "model-kinds.ts");

export class FieldChecker {
  private readonly checker: ts.TypeChecker;
  private readonly kinds: ts.Type;

  constructor() {
    const program = ts.createProgram([KINDS_FILE], {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      strict: true,
      skipLibCheck: true,
      noEmit: true,
      types: [],
    });
    this.checker = program.getTypeChecker();
    const source = program.getSourceFile(KINDS_FILE);
    if (!source) throw new Error(`cannot load ${KINDS_FILE}`);
    const moduleSymbol = this.checker.getSymbolAtLocation(source);
    const symbol =
      moduleSymbol && this.checker.getExportsOfModule(moduleSymbol).find((s) => s.name === "RenderedKinds");
    if (!symbol) throw new Error("RenderedKinds is not exported from model-kinds.ts");
    this.kinds = this.checker.getDeclaredTypeOfSymbol(symbol);
  }

  /** Paths of fields in `obj` that its kind's API schema does not define. Throws for a kind it does not know. */
  unknownFields(obj: K8sObject): string[] {
    const key = `${obj.apiVersion}/${obj.kind}`;
    const prop = this.kinds.getProperty(key);
    if (!prop) throw new Error(`no API model for ${key}: add it to test/k8s/model-kinds.ts`);
    const found: string[] = [];
    this.walk(obj, this.checker.getTypeOfSymbol(prop), "", found);
    return found;
  }

  private walk(value: unknown, declared: ts.Type, at: string, found: string[]): void {
    if (value === null || value === undefined || typeof value !== "object") return;
    const type = this.checker.getNonNullableType(declared);
    if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return;
    const candidates = type.isUnion() ? type.types : [type];
    if (Array.isArray(value)) {
      const arrayType = candidates.find((t) => this.checker.isArrayType(t));
      if (!arrayType) return;
      const [element] = this.checker.getTypeArguments(arrayType as ts.TypeReference);
      if (element) for (const [i, item] of value.entries()) this.walk(item, element, `${at}[${i}]`, found);
      return;
    }
    const objectType = candidates.find(
      (t) => t.flags & ts.TypeFlags.Object && !this.checker.isArrayType(t) && !this.checker.isTupleType(t),
    );
    if (!objectType) return;
    const mapValue = this.checker.getIndexInfoOfType(objectType, ts.IndexKind.String)?.type;
    for (const [k, v] of Object.entries(value)) {
      const member = objectType.getProperty(k);
      if (member) this.walk(v, this.checker.getTypeOfSymbol(member), `${at}.${k}`, found);
      else if (mapValue) this.walk(v, mapValue, `${at}.${k}`, found);
      else found.push(`${at}.${k}`);
    }
  }
}
