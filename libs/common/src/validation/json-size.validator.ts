import { registerDecorator, ValidationOptions } from 'class-validator';

/** The value, serialised as JSON, is at most `maxBytes` bytes (metadata ≤ 16 KiB). */
export function MaxJsonSize(maxBytes: number, options?: ValidationOptions) {
  return (target: object, propertyName: string) =>
    registerDecorator({
      name: 'maxJsonSize',
      target: target.constructor,
      propertyName,
      options: { message: `must be at most ${maxBytes} bytes as JSON`, context: { code: 'TOO_LARGE' }, ...options },
      validator: {
        validate: (value: unknown) => value === undefined || Buffer.byteLength(JSON.stringify(value) ?? '') <= maxBytes,
      },
    });
}

/** Query-string booleans: "true" / "false" only. */
export const toBoolean = ({ value }: { value: unknown }): unknown =>
  value === 'true' ? true : value === 'false' ? false : value;
