import { iso } from '../organizations/organizations.mapper';
import { ApiKeyEntity } from './entities/api-key.entity';

export interface ApiKeyResponse {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  created_at: string;
  last_used_at: string | null;
}

export interface CreatedApiKeyResponse {
  id: string;
  name: string;
  /** The secret: in this response only, never again. */
  key: string;
  scopes: string[];
  created_at: string;
}

export function mapApiKey(key: ApiKeyEntity): ApiKeyResponse {
  return {
    id: key.id,
    name: key.name,
    prefix: key.keyPrefix,
    scopes: key.scopes,
    created_at: iso(key.createdAt)!,
    last_used_at: iso(key.lastUsedAt),
  };
}

export function mapCreatedApiKey(key: ApiKeyEntity, secret: string): CreatedApiKeyResponse {
  return { id: key.id, name: key.name, key: secret, scopes: key.scopes, created_at: iso(key.createdAt)! };
}
