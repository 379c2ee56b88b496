import { DynamicModule, Global, Module } from '@nestjs/common';
import { AppConfig } from './app-config';
import { MasterKeyService } from './master-key.service';

export const APP_CONFIG = Symbol('APP_CONFIG');

@Global()
@Module({})
export class ConfigModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: ConfigModule,
      providers: [
        { provide: APP_CONFIG, useValue: config },
        { provide: MasterKeyService, useValue: new MasterKeyService(config) },
      ],
      exports: [APP_CONFIG, MasterKeyService],
    };
  }
}
