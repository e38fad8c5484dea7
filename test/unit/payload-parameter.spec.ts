// Which parameter of a branch handler takes the whole payload typed with a class (a DTO a validating
// pipe checks), and the pipes the handler declares around it: what the start-up warning about a
// compensation validated like its action reads (see DtmStartupChecks).
import { describe, expect, it } from '@jest/globals';
import { Body, Controller, Post, UsePipes, type ArgumentMetadata, type PipeTransform } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { payloadParameterOf } from '../../lib/branches/branch-metadata.accessor.js';

class Move {
  account!: number;
}

interface MoveShape {
  account: number;
}

class Trim implements PipeTransform {
  transform(value: unknown, _metadata: ArgumentMetadata): unknown {
    return value;
  }
}

class Check implements PipeTransform {
  transform(value: unknown, _metadata: ArgumentMetadata): unknown {
    return value;
  }
}

@UsePipes(Trim)
@Controller('x')
class Handlers {
  @Post('dto')
  dto(@Body() _m: Move) {}

  @Post('rpc')
  rpc(@Payload() _m: Move) {}

  @Post('piped')
  @UsePipes(new Check())
  piped(_other: string, @Body(Check) _m: Move) {}

  @Post('shape')
  shape(@Body() _m: MoveShape) {}

  @Post('field')
  field(@Body('account') _a: Move) {}

  @Post('plain')
  plain(@Body() _m: Record<string, unknown>) {}
}

describe('payloadParameterOf', () => {
  it('a whole payload typed with a class, by @Body() or @Payload(): the class and the controller\'s, the handler\'s and the parameter\'s pipes', () => {
    expect(payloadParameterOf(Handlers, 'dto')).toEqual({ type: Move, pipes: ['Trim'] });
    expect(payloadParameterOf(Handlers, 'rpc')).toEqual({ type: Move, pipes: ['Trim'] });
    expect(payloadParameterOf(Handlers, 'piped')).toEqual({ type: Move, pipes: ['Trim', 'Check', 'Check'] });
  });

  it('none for an interface, an object type, or one field of the payload', () => {
    expect(payloadParameterOf(Handlers, 'shape')).toBeUndefined();
    expect(payloadParameterOf(Handlers, 'plain')).toBeUndefined();
    expect(payloadParameterOf(Handlers, 'field')).toBeUndefined();
  });
});
