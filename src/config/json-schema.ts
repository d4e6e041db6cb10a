/**
 * The JSON Schema of the config file, for editors (`serve-bin schema`),
 * generated from the zod schema so the two never disagree.
 */
import { z } from "zod";
import { serveConfigSchema } from "./schema.ts";

/**
 * The config file's JSON Schema (draft 2020-12). Input side: fields with a
 * default are optional. Cross-field rules (unique names, routes naming known
 * applications) are checked by serve-bin, not by the schema.
 *
 * @example console.log(JSON.stringify(configJsonSchema(), null, 2))
 */
export function configJsonSchema(): Record<string, unknown> {
  const { $schema, description, ...rest } = z.toJSONSchema(serveConfigSchema(), { io: "input", target: "draft-2020-12" }) as Record<
    string,
    unknown
  >;
  return {
    $schema,
    title: "serve-bin config",
    description,
    ...rest,
  };
}
