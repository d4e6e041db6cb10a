import { configJsonSchema } from "../config/json-schema.ts";
import { parse } from "./args.ts";

/**
 * `serve-bin schema`: the config file's JSON Schema, for editors.
 *
 * @example serve-bin schema > serve-bin.schema.json
 */
export async function schemaCommand(argv: string[]): Promise<number> {
  parse(argv, {}, "serve-bin schema");
  console.log(JSON.stringify(configJsonSchema(), null, 2));
  return 0;
}
