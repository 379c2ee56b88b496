import { ValidateIf, ValidationOptions } from 'class-validator';

/**
 * Like @IsOptional, but only an absent property skips the other rules: an explicit `null` is
 * validated (and refused by them). For fields that may be left out of a change but never cleared.
 */
export function IsOmittable(options?: ValidationOptions) {
  return ValidateIf((_object: object, value: unknown) => value !== undefined, options);
}
