import { ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsInt, IsOptional, Max, Min } from 'class-validator';

/**
 * A query-string integer written in decimal digits (an optional minus sign): `0x10`, `1e2`, `+5`,
 * ` 5` or `1.5` stay strings and fail @IsInt, instead of being read as JavaScript's Number() reads them.
 */
const DecimalInteger = () => Transform(({ value }: { value: unknown }) => (typeof value === 'string' && /^-?\d{1,15}$/.test(value) ? Number(value) : value));

export class OffsetPaginationQuery {
  @ApiPropertyOptional({ minimum: 1, maximum: 100, default: 25 })
  @IsOptional()
  @DecimalInteger()
  @IsInt()
  @Min(1)
  @Max(100)
  limit: number = 25;

  @ApiPropertyOptional({ minimum: 0, default: 0 })
  @IsOptional()
  @DecimalInteger()
  @IsInt()
  @Min(0)
  @Max(10_000_000)
  offset: number = 0;
}

export interface OffsetPage<T> {
  data: T[];
  pagination: { total: number; limit: number; offset: number; has_more: boolean; next_cursor: string | null };
}

export function offsetPage<T>(data: T[], total: number, limit: number, offset: number): OffsetPage<T> {
  return { data, pagination: { total, limit, offset, has_more: offset + data.length < total, next_cursor: null } };
}
