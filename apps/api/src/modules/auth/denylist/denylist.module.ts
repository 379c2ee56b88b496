import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { RevokedSubjectEntity, RevokedTokenEntity } from './revocation.entities';
import { TokenDenylist } from './token-denylist.service';

@Module({
  imports: [TypeOrmModule.forFeature([RevokedTokenEntity, RevokedSubjectEntity])],
  providers: [TokenDenylist],
  exports: [TokenDenylist],
})
export class DenylistModule {}
